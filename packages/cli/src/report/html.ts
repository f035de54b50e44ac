import { escapeXml, formatNumber } from './svg.js';

export const escapeHtml = escapeXml;

/** The note a missing section shows instead of a chart: what is missing and which command produces it. */
export function unavailable(what: string, howToGet: string): string {
  return `<p class="unavailable">Not available: ${escapeHtml(what)}. Run <code>${escapeHtml(howToGet)}</code> to get it.</p>`;
}

export function section(id: string, title: string, explanation: string, body: string): string {
  return `<section id="${escapeHtml(id)}"><h2>${escapeHtml(title)}</h2><p class="explain">${explanation}</p>${body}</section>`;
}

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, className = ''): string {
  const head = headers.map((h) => `<th>${h}</th>`).join('');
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join('')}</tr>`).join('');
  return `<table class="${className}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

/** "+12.5%" style relative change, or an empty string when the base is zero. */
export function relativeChange(before: number, after: number): string {
  if (before === 0 || !Number.isFinite(before) || !Number.isFinite(after)) return '';
  const percent = ((after - before) / Math.abs(before)) * 100;
  return `${percent >= 0 ? '+' : '−'}${Math.abs(percent).toFixed(1)}%`;
}

export function signed(value: number, digits = 4): string {
  if (value === 0) return '0';
  return `${value > 0 ? '+' : '−'}${formatNumber(Math.abs(value), digits)}`;
}
