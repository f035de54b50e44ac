export { buildProgram } from './program.js';
export { main } from './main.js';
export { cliReferenceMarkdown } from './cli-reference.js';
export { runDemo, demoSettings, type DemoOptions, type DemoSummary } from './demo/run-demo.js';
