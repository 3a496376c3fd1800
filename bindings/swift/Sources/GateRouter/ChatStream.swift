// Hand-written Swift idiom on top of the generated bindings (GateRouter.swift is a link to
// ../../generated/GateRouter.swift): the stream as an AsyncSequence. No logic: it forwards
// the listener's callbacks into an AsyncThrowingStream, like ChatFlow.kt does for Kotlin.
import Foundation

/// Forwards stream callbacks (they arrive on a gaterouter worker thread) into a continuation.
final class ChatChunkForwarder: ChatStreamListener, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<ChatChunk, Error>.Continuation

    init(_ continuation: AsyncThrowingStream<ChatChunk, Error>.Continuation) {
        self.continuation = continuation
    }

    func onChunk(chunk: ChatChunk) { continuation.yield(chunk) }
    func onComplete(usage: Usage?) { continuation.finish() }
    func onError(error: GateRouterError) { continuation.finish(throwing: error) }
}

extension GateRouterClient {
    /// Streams the answer as an `AsyncThrowingStream` of chunks (the last one carries `usage`).
    ///
    ///     for try await chunk in try client.chatStream(request: req) { print(chunk.text ?? "", terminator: "") }
    ///
    /// The request is checked before this returns (a bad one throws `GateRouterError`
    /// here). Errors during the stream are thrown from the `for try await` loop. Leaving the
    /// loop early (`break`, a cancelled `Task`) cancels the stream and closes its connection.
    /// The buffer is unbounded so the Rust worker delivering chunks never blocks.
    public func chatStream(request: ChatRequest) throws -> AsyncThrowingStream<ChatChunk, Error> {
        let (stream, continuation) = AsyncThrowingStream<ChatChunk, Error>.makeStream(bufferingPolicy: .unbounded)
        let handle = try chatStream(request: request, listener: ChatChunkForwarder(continuation))
        continuation.onTermination = { _ in handle.cancel() } // a no-op once finished
        return stream
    }
}
