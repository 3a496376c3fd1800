// ESM entry: the same objects as the CommonJS entry (one native addon, one class
// identity, so `instanceof` works across `import` and `require`).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const cjs = require('./index.js')

export const {
  GateRouter,
  Stream,
  GateRouterError,
  ConfigError,
  AuthenticationError,
  RateLimitError,
  ProviderUnavailableError,
  InvalidRequestError,
  ContextLengthExceededError,
  APITimeoutError,
  StreamInterruptedError,
  InvalidResponseError,
  BudgetExceededError,
  PermissionDeniedError,
  ClientClosedError,
  AbortError,
  countTokens,
  countTokensSync,
  estimateCost,
  estimateCostSync,
  cost,
  coreVersion,
} = cjs
export default cjs.GateRouter
