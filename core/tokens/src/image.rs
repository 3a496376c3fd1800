//! Image dimensions from header bytes (PNG, JPEG, GIF, WebP) and per-provider image
//! token formulas. No image crate: only the few header bytes that carry the size are read.

use gaterouter_types::types::ImageRef;
use serde::{Deserialize, Serialize};

/// A recognised image container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG (baseline or progressive).
    Jpeg,
    /// GIF87a / GIF89a.
    Gif,
    /// WebP (lossy VP8, lossless VP8L, extended VP8X).
    Webp,
}

/// Width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDims {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Container it was read from.
    pub format: ImageFormat,
}

/// How many leading bytes of a data URL are decoded to find the size. JPEG puts the
/// frame header after EXIF/ICC segments, which can be large; 256 KiB covers real photos.
const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Dimensions of a `data:image/...;base64,...` URL, or `None` when it is not a data URL,
/// not base64, or not a recognised image.
pub fn image_dims_from_data_url(url: &str) -> Option<ImageDims> {
    let Ok(ImageRef::Base64 { data, .. }) = ImageRef::parse(url) else {
        return None;
    };
    let bytes = decode_base64_prefix(data.as_bytes(), MAX_HEADER_BYTES);
    image_dims_from_bytes(&bytes)
}

/// Decode up to `max_out` bytes of standard or URL-safe base64, skipping whitespace and
/// stopping at padding or the first invalid character.
fn decode_base64_prefix(input: &[u8], max_out: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(max_out.min(input.len() * 3 / 4 + 3));
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
            if out.len() >= max_out {
                break;
            }
        }
    }
    out
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}
fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le24(b: &[u8], at: usize) -> Option<u32> {
    Some(
        u32::from(*b.get(at)?) | u32::from(*b.get(at + 1)?) << 8 | u32::from(*b.get(at + 2)?) << 16,
    )
}

/// Dimensions from the first bytes of an image file.
pub fn image_dims_from_bytes(b: &[u8]) -> Option<ImageDims> {
    let dims = |width, height, format| {
        (width > 0 && height > 0).then_some(ImageDims {
            width,
            height,
            format,
        })
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return dims(be32(b, 16)?, be32(b, 20)?, ImageFormat::Png);
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return dims(le16(b, 6)?, le16(b, 8)?, ImageFormat::Gif);
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8 " => dims(
                le16(b, 26)? & 0x3fff,
                le16(b, 28)? & 0x3fff,
                ImageFormat::Webp,
            ),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                dims(
                    (bits & 0x3fff) + 1,
                    ((bits >> 14) & 0x3fff) + 1,
                    ImageFormat::Webp,
                )
            }
            b"VP8X" => dims(le24(b, 24)? + 1, le24(b, 27)? + 1, ImageFormat::Webp),
            _ => None,
        };
    }
    if b.starts_with(&[0xff, 0xd8]) {
        return jpeg_dims(b);
    }
    None
}

/// Walk JPEG segments to the first start-of-frame marker (SOF0..SOF15 except DHT 0xC4,
/// JPG 0xC8 and DAC 0xCC), which holds height then width.
fn jpeg_dims(b: &[u8]) -> Option<ImageDims> {
    let mut i = 2;
    loop {
        // Skip fill bytes before a marker.
        while *b.get(i)? == 0xff && *b.get(i + 1)? == 0xff {
            i += 1;
        }
        if *b.get(i)? != 0xff {
            return None;
        }
        let marker = *b.get(i + 1)?;
        i += 2;
        match marker {
            0xd8 | 0x01 | 0xd0..=0xd7 => continue, // no length
            0xd9 | 0xda => return None,            // end of image / start of scan before a frame
            _ => {}
        }
        let len = be16(b, i)? as usize;
        if len < 2 {
            return None;
        }
        if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let (h, w) = (be16(b, i + 3)?, be16(b, i + 5)?);
            return (w > 0 && h > 0).then_some(ImageDims {
                width: w,
                height: h,
                format: ImageFormat::Jpeg,
            });
        }
        i += len;
    }
}

/// OpenAI image token parameters for a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum OpenAiImageRule {
    /// 512px tiles: `base + per_tile * tiles` (low detail: `base`).
    Tiles { base: u64, per_tile: u64 },
    /// 32px patches capped at 1536, times a multiplier in thousandths.
    Patches { multiplier_per_mille: u64 },
}

/// OpenAI's published image rules (vision guide, "Calculating costs"):
/// gpt-4o / gpt-4.1 / gpt-4.5: 85 + 170/tile; gpt-4o-mini: 2833 + 5667/tile (its token
/// price is 1/33 of gpt-4o's, so the dollar cost matches); o1 / o3: 75 + 150; gpt-5:
/// 70 + 140; gpt-4.1-mini, gpt-5-mini: patches x1.62; gpt-4.1-nano, gpt-5-nano: x2.46;
/// o4-mini: x1.72.
pub(crate) fn openai_image_rule(model_name: &str) -> OpenAiImageRule {
    let m = model_name;
    let tiles = |base, per_tile| OpenAiImageRule::Tiles { base, per_tile };
    let patches = |multiplier_per_mille| OpenAiImageRule::Patches {
        multiplier_per_mille,
    };
    if m.starts_with("gpt-4o-mini") {
        tiles(2833, 5667)
    } else if m.starts_with("gpt-4.1-mini") || m.starts_with("gpt-5-mini") {
        patches(1620)
    } else if m.starts_with("gpt-4.1-nano") || m.starts_with("gpt-5-nano") {
        patches(2460)
    } else if m.starts_with("o4-mini") {
        patches(1720)
    } else if m.starts_with("o1") || m.starts_with("o3") {
        tiles(75, 150)
    } else if m.starts_with("gpt-5") {
        tiles(70, 140)
    } else {
        tiles(85, 170)
    }
}

/// OpenAI tile formula: fit within 2048x2048, then scale the shortest side down to
/// 768, count 512px tiles. Low detail is the base alone. `auto` is counted as high
/// (an upper bound: OpenAI may pick low for small images).
pub(crate) fn openai_image_tokens(rule: OpenAiImageRule, w: u32, h: u32, low: bool) -> u64 {
    let (w, h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    match rule {
        OpenAiImageRule::Tiles { base, per_tile } => {
            if low {
                return base;
            }
            let (mut w, mut h) = (w, h);
            if w > 2048.0 || h > 2048.0 {
                let s = 2048.0 / w.max(h);
                w *= s;
                h *= s;
            }
            let short = w.min(h);
            if short > 768.0 {
                let s = 768.0 / short;
                w *= s;
                h *= s;
            }
            let tiles = (w / 512.0).ceil() as u64 * (h / 512.0).ceil() as u64;
            base + per_tile * tiles
        }
        OpenAiImageRule::Patches {
            multiplier_per_mille,
        } => {
            const CAP: f64 = 1536.0;
            let raw = (w / 32.0).ceil() * (h / 32.0).ceil();
            let patches = if raw <= CAP {
                raw
            } else {
                let mut s = (CAP * 32.0 * 32.0 / (w * h)).sqrt();
                s *= ((w * s / 32.0).floor() / (w * s / 32.0))
                    .min((h * s / 32.0).floor() / (h * s / 32.0));
                ((w * s / 32.0).ceil() * (h * s / 32.0).ceil()).min(CAP)
            };
            (patches as u64 * multiplier_per_mille).div_ceil(1000)
        }
    }
}

/// Anthropic: images are scaled to fit a 1568px long edge and about 1.15 megapixels
/// (about 1,600 tokens), then cost `width * height / 750` tokens.
pub(crate) fn anthropic_image_tokens(w: u32, h: u32) -> u64 {
    let (mut w, mut h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let long = w.max(h);
    if long > 1568.0 {
        w *= 1568.0 / long;
        h *= 1568.0 / long;
    }
    let max_area = 1600.0 * 750.0;
    if w * h > max_area {
        let s = (max_area / (w * h)).sqrt();
        w *= s;
        h *= s;
    }
    // Resized images have whole pixels.
    let (w, h) = (w.floor().max(1.0), h.floor().max(1.0));
    ((w * h) / 750.0).ceil() as u64
}

/// Gemini: 258 tokens per image (the published per-image figure; Gemini 2.x may tile
/// very large images into several 258-token tiles, which this does not model).
pub(crate) const GEMINI_IMAGE_TOKENS: u64 = 258;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..=c.len() {
                s.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            }
        }
        while s.len() % 4 != 0 {
            s.push('=');
        }
        s
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 6, 0, 0, 0]);
        v
    }

    #[test]
    fn reads_each_format() {
        let d =
            image_dims_from_data_url(&format!("data:image/png;base64,{}", b64(&png(1024, 768))))
                .unwrap();
        assert_eq!((d.width, d.height, d.format), (1024, 768, ImageFormat::Png));

        let gif = [b"GIF89a".as_slice(), &[0x40, 0x01, 0xf0, 0x00]].concat();
        assert_eq!(
            image_dims_from_bytes(&gif).map(|d| (d.width, d.height)),
            Some((320, 240))
        );

        // JPEG: SOI, APP0 (16 bytes), DQT stub, SOF0 with height 480 width 640.
        let mut jpg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpg.extend_from_slice(&[0; 14]);
        jpg.extend_from_slice(&[0xff, 0xdb, 0x00, 0x04, 0, 0]);
        jpg.extend_from_slice(&[0xff, 0xc2, 0x00, 0x11, 0x08, 0x01, 0xe0, 0x02, 0x80, 3]);
        let d = image_dims_from_bytes(&jpg).unwrap();
        assert_eq!((d.width, d.height, d.format), (640, 480, ImageFormat::Jpeg));

        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[0xff, 0x03, 0x00, 0xff, 0x01, 0x00]); // 1024 x 512
        let d = image_dims_from_bytes(&webp).unwrap();
        assert_eq!((d.width, d.height), (1024, 512));

        let mut vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        let bits: u32 = 99 | (49 << 14); // 100 x 50
        vp8l.extend_from_slice(&bits.to_le_bytes());
        assert_eq!(
            image_dims_from_bytes(&vp8l).map(|d| (d.width, d.height)),
            Some((100, 50))
        );
    }

    #[test]
    fn garbage_is_none_not_panic() {
        for s in [
            "data:image/png;base64,",
            "data:,x",
            "https://x/y.png",
            "data:image/png;base64,!!!!",
            "data:image/jpeg;base64,/9j/",
        ] {
            assert_eq!(image_dims_from_data_url(s), None, "{s}");
        }
        assert_eq!(image_dims_from_bytes(&[0xff, 0xd8, 0xff, 0xc0, 0x00]), None);
        assert_eq!(
            image_dims_from_bytes(&[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x00]),
            None
        );
    }

    #[test]
    fn openai_formulas_match_the_published_examples() {
        let r = openai_image_rule("gpt-4o");
        // Vision guide: 1024x1024 high = 765; 2048x4096 high = 1105; low = 85.
        assert_eq!(openai_image_tokens(r, 1024, 1024, false), 765);
        assert_eq!(openai_image_tokens(r, 2048, 4096, false), 1105);
        assert_eq!(openai_image_tokens(r, 4096, 8192, true), 85);
        // gpt-4o-mini: 2833 + 4 * 5667 for 1024x1024.
        assert_eq!(
            openai_image_tokens(openai_image_rule("gpt-4o-mini"), 1024, 1024, false),
            2833 + 4 * 5667
        );
        // Patches: 1024x1024 -> 1024 patches; 1800x2400 -> 1452 patches (guide examples).
        let p = OpenAiImageRule::Patches {
            multiplier_per_mille: 1000,
        };
        assert_eq!(openai_image_tokens(p, 1024, 1024, false), 1024);
        assert_eq!(openai_image_tokens(p, 1800, 2400, false), 1452);
        assert_eq!(
            openai_image_tokens(openai_image_rule("gpt-4.1-mini"), 1024, 1024, false),
            (1024 * 1620_u64).div_ceil(1000)
        );
    }

    #[test]
    fn anthropic_formula() {
        assert_eq!(anthropic_image_tokens(1000, 1000), 1334);
        assert_eq!(anthropic_image_tokens(200, 200), 54);
        assert!(anthropic_image_tokens(8000, 8000) <= 1600);
    }
}
