/** Headless Debian Chromium for report tests and screenshots: no network, no GPU, a fresh profile every time. */
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const chromiumPath = process.env.FAIRPRUNE_CHROMIUM ?? '/usr/bin/chromium';

export async function launchChromium(profileDir: string, viewport = { width: 1360, height: 900 }): Promise<BrowserContext> {
  if (!existsSync(chromiumPath)) throw new Error(`Chromium not found at ${chromiumPath} (Debian package "chromium"; .ci/run installs it)`);
  // playwright passes the profile folder as --user-data-dir.
  return chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Collects what a page reports as wrong — console errors and warnings, uncaught exceptions — into the returned list. */
export function pageProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
  return problems;
}
