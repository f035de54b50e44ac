/** Headless Debian Chromium for report tests and screenshots: no network, no GPU, a fresh profile every time. */
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext } from 'playwright-core';

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
