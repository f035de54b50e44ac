import type { PairProjection } from '@fairprune/core';
import { escapeHtml, section, unavailable } from '../html.js';
import { axes, colours, escapeXml, legend, linearScale, marker, round, svgDocument, type Frame } from '../svg.js';
import { howToGet } from './commands.js';

/** How a token reads on a chart: surrounding spaces trimmed, an all-space token shown as ␣. */
function tokenLabel(token: string): string {
  const trimmed = token.trim();
  return trimmed === '' ? '␣' : trimmed;
}

export function pcaChart(projection: PairProjection): string {
  const frame: Frame = { width: 720, height: 480, left: 70, right: 20, top: 48, bottom: 46 };
  const points = [...projection.a.points, ...projection.b.points];
  const x = linearScale(points.map((p) => p.x), [frame.left, frame.width - frame.right], { pad: 0.08 });
  const y = linearScale(points.map((p) => p.y), [frame.height - frame.bottom, frame.top], { pad: 0.08 });
  const [ratio1, ratio2] = projection.explainedVarianceRatio;
  const defs =
    '<defs><marker id="pca-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">' +
    `<path d="M0,0L10,5L0,10z" fill="${colours.link}"/></marker></defs>`;
  const byIndex = {
    a: new Map(projection.a.points.map((p) => [p.index, p])),
    b: new Map(projection.b.points.map((p) => [p.index, p])),
  };
  const drawnLinks = projection.links.filter((link) => byIndex.a.has(link.a) && byIndex.b.has(link.b));
  const linked = { a: new Set(drawnLinks.map((l) => l.a)), b: new Set(drawnLinks.map((l) => l.b)) };
  const links = drawnLinks.map((link) => {
    const from = byIndex.a.get(link.a)!;
    const to = byIndex.b.get(link.b)!;
    return (
      `<line class="pca-link${link.differs ? ' differs' : ''}" x1="${round(x(from.x))}" y1="${round(y(from.y))}" x2="${round(x(to.x))}" y2="${round(y(to.y))}" ` +
      `stroke="${colours.link}" stroke-width="${link.differs ? 1.6 : 1}" marker-end="url(#pca-arrow)"/>`
    );
  });
  const pointsA = projection.a.points.map((p) =>
    marker('circle', x(p.x), y(p.y), 5, colours.promptA, ' class="pca-point pca-a"', `A, token ${p.index}: ${p.token}`),
  );
  const pointsB = projection.b.points.map((p) =>
    marker('triangle', x(p.x), y(p.y), 5, colours.promptB, ' class="pca-point pca-b"', `B, token ${p.index}: ${p.token}`),
  );
  // Differing tokens in bold red ("A / B" at the arrow's midpoint when linked, else beside their own point); matching
  // tokens in small grey beside prompt A's point, so outliers can be read too.
  const labels: string[] = [];
  for (const link of drawnLinks) {
    const from = byIndex.a.get(link.a)!;
    const to = byIndex.b.get(link.b)!;
    if (link.differs) {
      const text = `${tokenLabel(from.token)} / ${tokenLabel(to.token)}`;
      labels.push(`<text class="pca-diff-label" x="${round((x(from.x) + x(to.x)) / 2 + 6)}" y="${round((y(from.y) + y(to.y)) / 2 - 6)}">${escapeXml(text)}</text>`);
    } else {
      labels.push(`<text class="pca-token-label" x="${round(x(from.x) + 6)}" y="${round(y(from.y) + 13)}">${escapeXml(tokenLabel(from.token))}</text>`);
    }
  }
  for (const [side, pointsOfSide] of [['a', projection.a.points], ['b', projection.b.points]] as const) {
    for (const p of pointsOfSide) {
      if (linked[side].has(p.index)) continue;
      labels.push(`<text class="pca-diff-label" x="${round(x(p.x) + 7)}" y="${round(y(p.y) - 7)}">${escapeXml(tokenLabel(p.token))}</text>`);
    }
  }
  const body =
    defs +
    axes(frame, x, y, { x: `PC1 (${(ratio1 * 100).toFixed(1)}% of variance)`, y: `PC2 (${(ratio2 * 100).toFixed(1)}% of variance)` }) +
    `<g class="links">${links.join('')}</g><g class="points">${pointsA.join('')}${pointsB.join('')}</g><g class="labels">${labels.join('')}</g>` +
    legend(
      [
        { label: 'prompt A tokens', colour: colours.promptA, shape: 'circle' },
        { label: 'prompt B tokens', colour: colours.promptB, shape: 'triangle' },
      ],
      frame.left,
      38,
    );
  return svgDocument(frame, 'pca-chart', `PCA of token activations at ${projection.layerKey}`, body);
}

export function pcaSection(projection: PairProjection | undefined): string {
  const title = 'Token activations of one pair (PCA)';
  const explanation =
    'Every token of both prompts, projected onto the two directions along which their activations vary most (one PCA ' +
    'fitted to both prompts). Arrows join each token of prompt A to the matching token of prompt B; tokens that differ ' +
    'are labelled. Positions before the differing word coincide (causal attention); the spread after it is the bias ' +
    'travelling through the sentence. Token labels include BOS, so they line up with the activations.';
  if (!projection) return section('pca', title, explanation, unavailable('token activations of a pair', howToGet.pca));
  const captions = [
    projection.a.text ? `<li><span class="swatch" style="background:${colours.promptA}"></span>A: ${escapeHtml(projection.a.text)}</li>` : '',
    projection.b.text ? `<li><span class="swatch" style="background:${colours.promptB}"></span>B: ${escapeHtml(projection.b.text)}</li>` : '',
  ].join('');
  const firstIndex = Math.min(projection.a.points[0]?.index ?? 0, projection.b.points[0]?.index ?? 0);
  const omitted =
    firstIndex > 0
      ? `<p class="note">The first ${firstIndex === 1 ? 'token (BOS) was' : `${firstIndex} tokens were`} left out of the fit: ` +
        'its activations are far larger than the others’ and would squeeze them into one dot. Token numbers still count it.</p>'
      : '';
  return section('pca', title, explanation, `${pcaChart(projection)}${omitted}<ul class="prompts">${captions}</ul>`);
}
