import type { EvalProgress } from './evaluate.js';

/** One status line: bar, documents, docs/s, tokens/s and ETA (for a terminal or a log). */
export function formatProgress(p: EvalProgress, nowMs: number = p.elapsedMs, width = 24): string {
  const fraction = p.tokensTotal > 0 ? p.tokensDone / p.tokensTotal : 0;
  const filled = Math.round(fraction * width);
  const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
  const seconds = Math.max(nowMs, 1) / 1000;
  const docsPerSecond = p.docsDone / seconds;
  const tokensPerSecond = p.tokensDone / seconds;
  // Rows run longest first, so tokens (not docs) tell how much work is left.
  const eta = tokensPerSecond > 0 ? (p.tokensTotal - p.tokensDone) / tokensPerSecond : undefined;
  return `${p.task} ${bar} ${p.docsDone}/${p.docsTotal} docs  ${docsPerSecond.toFixed(1)} docs/s  ${formatCount(tokensPerSecond)} tok/s  ETA ${eta === undefined ? '?' : formatDuration(eta)}`;
}

function formatCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * Keeps one progress line on a stream: redrawn in place on a terminal (a timer refreshes rates and ETA between
 * updates, which is why scoring runs in a worker), one line every few seconds otherwise.
 */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr, intervalMs = 250): { update(p: EvalProgress): void; done(): void } {
  let latest: EvalProgress | undefined;
  let startedAt = Date.now();
  let lastLogged = 0;
  const tty = stream.isTTY === true;
  const draw = () => {
    if (!latest) return;
    const elapsed = latest.elapsedMs + (Date.now() - startedAt);
    if (tty) stream.write(`\r${formatProgress(latest, elapsed)}\x1b[K`);
    else if (Date.now() - lastLogged >= 5000) {
      lastLogged = Date.now();
      stream.write(`${formatProgress(latest, elapsed)}\n`);
    }
  };
  const timer = setInterval(draw, intervalMs);
  timer.unref();
  return {
    update(p) {
      latest = p;
      startedAt = Date.now();
      draw();
    },
    done() {
      clearInterval(timer);
      if (latest) stream.write(tty ? `\r${formatProgress(latest)}\x1b[K\n` : `${formatProgress(latest)}\n`);
    },
  };
}
