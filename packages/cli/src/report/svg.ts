/** Small inline-SVG chart kit: scales, ticks, axes, legends, grouped bars and scatter plots, all as strings. */

/** Okabe–Ito colours: distinguishable with the common colour-vision deficiencies. */
export const colours = {
  before: '#999999',
  after: '#0072b2',
  promptA: '#d55e00',
  promptB: '#0072b2',
  pruned: '#d55e00',
  kept: '#56b4e9',
  link: '#8a8a8a',
  axis: '#333333',
  grid: '#e3e3e3',
} as const;

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** A number as a person reads it: 4 significant digits, exponent form only for very small or large values. */
export function formatNumber(value: number, digits = 4): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6 || magnitude < 1e-4) return value.toExponential(digits - 1);
  return Number(value.toPrecision(digits)).toString();
}

export interface LinearScale {
  (value: number): number;
  domain: [number, number];
  ticks: number[];
}

/** Evenly spaced round tick values covering [min, max] (about `target` of them). */
export function niceTicks(min: number, max: number, target = 5): number[] {
  if (!(max > min)) return [min];
  const rawStep = (max - min) / target;
  const power = 10 ** Math.floor(Math.log10(rawStep));
  const step = ([1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rawStep) ?? 10 * power);
  const first = Math.ceil(min / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let t = first; t <= max + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  return ticks;
}

/** A linear scale whose domain is widened to round tick values; `includeZero` for bar charts. */
export function linearScale(values: readonly number[], range: [number, number], options: { includeZero?: boolean; pad?: number } = {}): LinearScale {
  const finite = values.filter(Number.isFinite);
  let lo = finite.length > 0 ? Math.min(...finite) : 0;
  let hi = finite.length > 0 ? Math.max(...finite) : 1;
  if (options.includeZero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (options.pad) {
    const span = hi - lo || Math.abs(hi) || 1;
    lo -= span * options.pad;
    hi += span * options.pad;
  }
  if (hi === lo) {
    hi = lo + (Math.abs(lo) || 1);
  }
  const ticks = niceTicks(lo, hi);
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : hi - lo;
  const domainLo = options.includeZero && lo === 0 ? 0 : Math.min(lo, Math.floor(lo / step) * step);
  const domainHi = options.includeZero && hi === 0 ? 0 : Math.max(hi, Math.ceil(hi / step) * step);
  const [r0, r1] = range;
  const scale = ((value: number) => r0 + ((value - domainLo) / (domainHi - domainLo)) * (r1 - r0)) as LinearScale;
  scale.domain = [domainLo, domainHi];
  scale.ticks = niceTicks(domainLo, domainHi);
  return scale;
}

export interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export interface LegendItem {
  label: string;
  colour: string;
  shape?: 'square' | 'circle' | 'cross' | 'triangle';
}

export function legend(items: readonly LegendItem[], x: number, y: number): string {
  let offset = 0;
  const parts = items.map((item) => {
    const mark = marker(item.shape ?? 'square', x + offset + 5, y - 4, 5, item.colour);
    const text = `<text x="${x + offset + 14}" y="${y}" class="legend-label">${escapeXml(item.label)}</text>`;
    offset += 24 + item.label.length * 6.5;
    return mark + text;
  });
  return `<g class="legend">${parts.join('')}</g>`;
}

/** A point marker; `attributes` go on the element and `tooltip` becomes its <title> child. */
export function marker(
  shape: NonNullable<LegendItem['shape']>,
  x: number,
  y: number,
  size: number,
  colour: string,
  attributes = '',
  tooltip?: string,
): string {
  const child = tooltip === undefined ? '' : `<title>${escapeXml(tooltip)}</title>`;
  const element = (tag: string, geometry: string): string =>
    child ? `<${tag} ${geometry}${attributes}>${child}</${tag}>` : `<${tag} ${geometry}${attributes}/>`;
  switch (shape) {
    case 'circle':
      return element('circle', `cx="${round(x)}" cy="${round(y)}" r="${size * 0.8}" fill="${colour}"`);
    case 'cross':
      return element(
        'path',
        `d="M${round(x - size)},${round(y - size)}L${round(x + size)},${round(y + size)}M${round(x - size)},${round(y + size)}L${round(x + size)},${round(y - size)}" stroke="${colour}" stroke-width="2"`,
      );
    case 'triangle':
      return element('path', `d="M${round(x)},${round(y - size)}L${round(x + size)},${round(y + size * 0.8)}L${round(x - size)},${round(y + size * 0.8)}Z" fill="${colour}"`);
    case 'square':
      return element('rect', `x="${round(x - size)}" y="${round(y - size)}" width="${size * 2}" height="${size * 2}" fill="${colour}"`);
  }
}

/** Grid lines, tick labels and axis titles for a plot area. */
export function axes(frame: Frame, x: LinearScale | null, y: LinearScale, labels: { x: string; y: string }): string {
  const plotLeft = frame.left;
  const plotRight = frame.width - frame.right;
  const plotTop = frame.top;
  const plotBottom = frame.height - frame.bottom;
  const parts: string[] = [];
  for (const tick of y.ticks) {
    const py = round(y(tick));
    parts.push(`<line x1="${plotLeft}" x2="${plotRight}" y1="${py}" y2="${py}" stroke="${tick === 0 ? colours.axis : colours.grid}"/>`);
    parts.push(`<text x="${plotLeft - 6}" y="${py + 4}" text-anchor="end" class="tick">${formatNumber(tick, 3)}</text>`);
  }
  if (x) {
    for (const tick of x.ticks) {
      const px = round(x(tick));
      parts.push(`<line x1="${px}" x2="${px}" y1="${plotTop}" y2="${plotBottom}" stroke="${colours.grid}"/>`);
      parts.push(`<text x="${px}" y="${plotBottom + 16}" text-anchor="middle" class="tick">${formatNumber(tick, 3)}</text>`);
    }
  }
  parts.push(`<line x1="${plotLeft}" x2="${plotLeft}" y1="${plotTop}" y2="${plotBottom}" stroke="${colours.axis}"/>`);
  parts.push(`<line x1="${plotLeft}" x2="${plotRight}" y1="${plotBottom}" y2="${plotBottom}" stroke="${colours.axis}"/>`);
  parts.push(
    `<text x="${round((plotLeft + plotRight) / 2)}" y="${frame.height - 6}" text-anchor="middle" class="axis-label">${escapeXml(labels.x)}</text>`,
  );
  const midY = round((plotTop + plotBottom) / 2);
  parts.push(`<text transform="translate(14 ${midY}) rotate(-90)" text-anchor="middle" class="axis-label">${escapeXml(labels.y)}</text>`);
  return `<g class="axes">${parts.join('')}</g>`;
}

export function svgDocument(frame: Frame, id: string, title: string, body: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" id="${escapeXml(id)}" class="chart" role="img" aria-label="${escapeXml(title)}" ` +
    `viewBox="0 0 ${frame.width} ${frame.height}" width="${frame.width}" height="${frame.height}">` +
    `<title>${escapeXml(title)}</title>` +
    `<text x="${frame.width / 2}" y="18" text-anchor="middle" class="chart-title">${escapeXml(title)}</text>${body}</svg>`
  );
}

export interface BarSeries {
  name: string;
  colour: string;
  /** One value per category; null draws no bar (missing data). */
  values: ReadonlyArray<number | null>;
}

export interface GroupedBarsSpec {
  id: string;
  title: string;
  categories: readonly string[];
  series: readonly BarSeries[];
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

/** Bars grouped by category, one bar per series; negative values grow down from zero. */
export function groupedBars(spec: GroupedBarsSpec): string {
  const longestCategory = Math.max(0, ...spec.categories.map((c) => c.length));
  const rotateLabels = spec.categories.length * (longestCategory * 6.5) > (spec.width ?? 460) - 80;
  const frame: Frame = {
    width: spec.width ?? 460,
    height: (spec.height ?? 260) + (rotateLabels ? longestCategory * 4 : 0),
    left: 64,
    right: 12,
    top: 44,
    bottom: 42 + (rotateLabels ? longestCategory * 4 : 0),
  };
  const values = spec.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const y = linearScale(values, [frame.height - frame.bottom, frame.top], { includeZero: true });
  const plotWidth = frame.width - frame.left - frame.right;
  const groupWidth = plotWidth / Math.max(1, spec.categories.length);
  const barWidth = (groupWidth * 0.8) / Math.max(1, spec.series.length);
  const zero = y(0);
  const bars: string[] = [];
  spec.categories.forEach((category, c) => {
    spec.series.forEach((series, s) => {
      const value = series.values[c];
      if (value === null || value === undefined || !Number.isFinite(value)) return;
      const x0 = frame.left + c * groupWidth + groupWidth * 0.1 + s * barWidth;
      const top = Math.min(y(value), zero);
      const height = Math.max(Math.abs(y(value) - zero), 0.5);
      bars.push(
        `<rect class="bar" data-series="${escapeXml(series.name)}" data-category="${escapeXml(category)}" data-value="${value}" ` +
          `x="${round(x0)}" y="${round(top)}" width="${round(barWidth * 0.92)}" height="${round(height)}" fill="${series.colour}">` +
          `<title>${escapeXml(`${series.name}, ${category}: ${formatNumber(value)}`)}</title></rect>`,
      );
    });
  });
  const categoryLabels = spec.categories.map((category, c) => {
    const cx = round(frame.left + (c + 0.5) * groupWidth);
    const cy = frame.height - frame.bottom + 16;
    return rotateLabels
      ? `<text transform="translate(${cx} ${cy - 4}) rotate(-35)" text-anchor="end" class="tick">${escapeXml(category)}</text>`
      : `<text x="${cx}" y="${cy}" text-anchor="middle" class="tick">${escapeXml(category)}</text>`;
  });
  const body =
    axes(frame, null, y, { x: spec.xLabel, y: spec.yLabel }) +
    `<g class="bars">${bars.join('')}</g>${categoryLabels.join('')}` +
    legend(spec.series.map((s) => ({ label: s.name, colour: s.colour })), frame.left, 36);
  return svgDocument(frame, spec.id, spec.title, body);
}

export interface ScatterGroup {
  name: string;
  colour: string;
  shape: 'circle' | 'cross' | 'triangle' | 'square';
  /** CSS class on every point, so tests and styles can find them. */
  className: string;
  points: ReadonlyArray<{ x: number; y: number; label: string }>;
}

export interface ScatterSpec {
  id: string;
  title: string;
  groups: readonly ScatterGroup[];
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

export function scatter(spec: ScatterSpec): string {
  const frame: Frame = { width: spec.width ?? 360, height: spec.height ?? 300, left: 64, right: 14, top: 44, bottom: 42 };
  const all = spec.groups.flatMap((g) => g.points);
  const x = linearScale(all.map((p) => p.x), [frame.left, frame.width - frame.right], { pad: 0.04 });
  const y = linearScale(all.map((p) => p.y), [frame.height - frame.bottom, frame.top], { pad: 0.04 });
  const groups = spec.groups.map(
    (group) =>
      `<g class="series" data-series="${escapeXml(group.name)}">` +
      group.points
        .map((p) => marker(group.shape, x(p.x), y(p.y), 3.5, group.colour, ` class="point ${group.className}" opacity="0.8"`, p.label))
        .join('') +
      '</g>',
  );
  const body =
    axes(frame, x, y, { x: spec.xLabel, y: spec.yLabel }) +
    groups.join('') +
    legend(spec.groups.map((g) => ({ label: `${g.name} (${g.points.length})`, colour: g.colour, shape: g.shape })), frame.left, 36);
  return svgDocument(frame, spec.id, spec.title, body);
}

export function round(value: number): number {
  return Math.round(value * 10) / 10;
}
