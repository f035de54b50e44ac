export {
  buildReportData,
  type GenerationView,
  type NeuronScoresView,
  type PlanView,
  type ReportParts,
  type TokenActivationsView,
} from './build.js';
export { loadReportData, type LoadedReport, type ReportInputs } from './load.js';
export { writeReport } from './write.js';
export { renderReport } from './render.js';
export { behaviourShift, type BehaviourShift } from './sections/behaviour.js';
export type {
  BehaviourView,
  BiasReportView,
  EvalResultsView,
  GenerationComparison,
  MetricStatsView,
  NeuronScatterData,
  ReportData,
} from './types.js';
