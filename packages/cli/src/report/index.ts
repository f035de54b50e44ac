export { renderReport } from './render.js';
export type {
  BehaviourView,
  BiasReportView,
  EvalResultsView,
  GenerationComparison,
  MetricStatsView,
  NeuronScatterData,
  ReportData,
} from './types.js';
