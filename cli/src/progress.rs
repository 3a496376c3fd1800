//! Progress on standard error for the long commands (`route eval|calibrate|simulate|score`,
//! `tokens` on large files, `admin apply`, `admin bill`). indicatif hides it when standard
//! error is not a terminal, so pipes, CI logs and scripts see nothing extra; standard
//! output keeps only the command's answer.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with `msg` and the elapsed time, ticking by itself until it is dropped or
/// [`done`] is called.
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(msg.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Clear the spinner line (the answer follows on standard output).
pub fn done(pb: &ProgressBar) {
    pb.finish_and_clear();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_spinner_without_a_terminal_is_hidden_and_finishes() {
        // Tests run without a terminal on standard error: nothing may be drawn.
        let pb = super::spinner("counting");
        assert!(pb.is_hidden());
        super::done(&pb);
        assert!(pb.is_finished());
    }
}
