import type { HubFileRequest } from '@fairprune/core';
import type { Row } from './data/read-rows.js';

/**
 * The three tasks exactly as lm-evaluation-harness defines them (0-shot, `eval-protocol.md` §1–2):
 * the prompt strings, the continuations, and what each document contributes to each metric.
 */
export type TaskName = 'lambada_openai' | 'lambada_standard' | 'boolq';
export const taskNames: readonly TaskName[] = ['lambada_openai', 'lambada_standard', 'boolq'];

export type Doc = LambadaDoc | BoolqDoc;
export interface LambadaDoc {
  kind: 'lambada';
  text: string;
}
export interface BoolqDoc {
  kind: 'boolq';
  passage: string;
  question: string;
  /** 0 = no (False), 1 = yes (True). */
  label: 0 | 1;
}

/** A `loglikelihood` request: the score of `continuation` after `context`. */
export interface TextRequest {
  context: string;
  continuation: string;
}

/** What the model says about one request: summed log-prob of the continuation, and whether every token was the argmax. */
export interface LoglikelihoodResult {
  ll: number;
  isGreedy: boolean;
}

export type MetricName = 'acc' | 'perplexity';

export interface TaskDefinition {
  name: TaskName;
  /** The file lm-evaluation-harness's dataset resolves to (the split it evaluates). */
  hubFile: HubFileRequest;
  split: string;
  version: number;
  metrics: readonly MetricName[];
  toDoc(row: Row, where: string): Doc;
  requests(doc: Doc): TextRequest[];
  /** Per-document metric values (`process_results`). */
  score(doc: Doc, results: readonly LoglikelihoodResult[]): Partial<Record<MetricName, number>>;
  /** The gold target as the harness logs it (`str(doc_to_target(doc))`). */
  target(doc: Doc): string;
}

function lambadaDoc(row: Row, where: string): LambadaDoc {
  const text = row.text;
  if (typeof text !== 'string') throw new Error(`${where}: LAMBADA needs a string field "text"`);
  if (!text.includes(' ')) throw new Error(`${where}: LAMBADA text has no space, so there is no last word to predict`);
  return { kind: 'lambada', text };
}

/** `text.split(' ')[:-1]|join(' ')` and `' ' + text.split(' ')[-1]`: split at the last single ASCII space. */
export function lambadaRequest(text: string): TextRequest {
  const i = text.lastIndexOf(' ');
  return { context: text.slice(0, i), continuation: ` ${text.slice(i + 1)}` };
}

const lambadaBase = {
  split: 'test',
  version: 1.0,
  metrics: ['perplexity', 'acc'] as const,
  toDoc: lambadaDoc,
  requests(doc: Doc): TextRequest[] {
    return [lambadaRequest(asLambada(doc).text)];
  },
  score(_doc: Doc, [result]: readonly LoglikelihoodResult[]) {
    if (!result) throw new Error('LAMBADA: missing request result');
    return { perplexity: result.ll, acc: result.isGreedy ? 1 : 0 };
  },
  target(doc: Doc): string {
    return lambadaRequest(asLambada(doc).text).continuation;
  },
};

const boolqChoices = ['no', 'yes'] as const;

export function boolqContext(doc: BoolqDoc): string {
  return `${doc.passage}\nQuestion: ${doc.question}?\nAnswer:`;
}

export const tasks: Record<TaskName, TaskDefinition> = {
  lambada_openai: {
    name: 'lambada_openai',
    // The OpenAI GPT-2 file itself, as JSONL; same 5153 texts as the repo's parquet conversion.
    hubFile: { type: 'dataset', repo: 'EleutherAI/lambada_openai', revision: 'main', path: 'data/lambada_test.jsonl' },
    ...lambadaBase,
  },
  lambada_standard: {
    name: 'lambada_standard',
    hubFile: { type: 'dataset', repo: 'cimec/lambada', revision: 'main', path: 'plain_text/test-00000-of-00001.parquet' },
    ...lambadaBase,
  },
  boolq: {
    name: 'boolq',
    hubFile: { type: 'dataset', repo: 'aps/super_glue', revision: 'main', path: 'boolq/validation-00000-of-00001.parquet' },
    split: 'validation',
    version: 2.0,
    metrics: ['acc'],
    toDoc(row: Row, where: string): BoolqDoc {
      const { passage, question, label } = row;
      if (typeof passage !== 'string' || typeof question !== 'string') {
        throw new Error(`${where}: BoolQ needs string fields "passage" and "question"`);
      }
      // Hub parquet: ClassLabel 0/1 (int32 or int64 → bigint); SuperGLUE's val.jsonl: JSON booleans.
      const value = typeof label === 'bigint' ? Number(label) : label;
      if (value === true || value === 1) return { kind: 'boolq', passage, question, label: 1 };
      if (value === false || value === 0) return { kind: 'boolq', passage, question, label: 0 };
      throw new Error(`${where}: BoolQ "label" must be 0/1 or false/true, got ${JSON.stringify(String(label))}`);
    },
    requests(doc: Doc): TextRequest[] {
      const context = boolqContext(asBoolq(doc));
      // target_delimiter " " + choice
      return boolqChoices.map((choice) => ({ context, continuation: ` ${choice}` }));
    },
    score(doc: Doc, results: readonly LoglikelihoodResult[]) {
      const [no, yes] = results;
      if (!no || !yes) throw new Error('BoolQ: expected two request results');
      const prediction = yes.ll > no.ll ? 1 : 0; // np.argmax: a tie picks the first choice, "no"
      return { acc: prediction === asBoolq(doc).label ? 1 : 0 };
    },
    target(doc: Doc): string {
      // doc_to_target is `label`, the choice index
      return String(asBoolq(doc).label);
    },
  },
};

export function getTask(name: string): TaskDefinition {
  const task = tasks[name as TaskName];
  if (!task) throw new Error(`unknown task "${name}" (expected one of: ${taskNames.join(', ')})`);
  return task;
}

function asLambada(doc: Doc): LambadaDoc {
  if (doc.kind !== 'lambada') throw new Error('expected a LAMBADA document');
  return doc;
}
function asBoolq(doc: Doc): BoolqDoc {
  if (doc.kind !== 'boolq') throw new Error('expected a BoolQ document');
  return doc;
}
