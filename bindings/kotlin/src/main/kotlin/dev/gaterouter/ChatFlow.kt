// Hand-written Kotlin idiom on top of the generated bindings (generated/): a cold Flow
// over GateRouterClient.chatStream. No logic: it forwards callbacks into a channel.
package dev.gaterouter

import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow

/**
 * Streams the answer as a [Flow] of chunks (the last one carries `usage`).
 *
 * The stream starts when the flow is collected; cancelling the collector (leaving a
 * `viewModelScope`, `take(n)`, ...) cancels the stream and closes its connection.
 * Errors arrive as [GateRouterException] thrown from `collect`. The buffer is unbounded
 * so the Rust worker thread delivering chunks never blocks on a slow collector.
 */
fun GateRouterClient.chatFlow(request: ChatRequest): Flow<ChatChunk> = callbackFlow {
    val handle = chatStream(request, object : ChatStreamListener {
        override fun onChunk(chunk: ChatChunk) {
            trySend(chunk)
        }

        override fun onComplete(usage: Usage?) {
            channel.close()
        }

        override fun onError(error: GateRouterException) {
            channel.close(error)
        }
    })
    awaitClose { handle.cancel() }
}.buffer(Channel.UNLIMITED)
