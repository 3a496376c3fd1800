// Types of the ESM entry (index.mjs): the same declarations as index.d.ts, with the
// client class as the default export (a CommonJS `export default` would read as the
// whole module from ESM).
import { GateRouter } from './index.js'

export * from './index.js'
export default GateRouter
