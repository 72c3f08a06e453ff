// Browser tests' shared setup: Debian's Chromium driven by playwright-core, never a downloaded
// browser. Without Chromium the tests skip with a message, unless CI=true or
// HERALD_REQUIRE_BROWSER=1, where they fail.

import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.HERALD_CHROMIUM ?? '/usr/bin/chromium';
const REQUIRED = process.env.CI === 'true' || process.env.HERALD_REQUIRE_BROWSER === '1';

/** Chromium flags for a closed network and a root user (see the machine notes). */
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** `false`, or why the browser tests skip (the `skip` option of node:test). */
export const skip =
  !existsSync(CHROMIUM) && !REQUIRED
    ? `no Chromium at ${CHROMIUM} (apt-get install chromium; HERALD_REQUIRE_BROWSER=1 makes this a failure)`
    : false;

/** Launches headless Chromium; throws a clear error when it is required and missing. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is required (CI=true or HERALD_REQUIRE_BROWSER=1) but ${CHROMIUM} does not exist: apt-get install chromium`,
    );
  }
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}
