// Drives Debian's Chromium (puppeteer-core) to a page and prints what the
// page wrote to #out once it sets data-done on <body>.
// Usage: node cors_page.js CHROMIUM PAGE_URL TIMEOUT_MS
'use strict';
const puppeteer = require('puppeteer-core');

async function main() {
  const [chromium, url, timeoutArg] = process.argv.slice(2);
  const timeout = parseInt(timeoutArg || '20000', 10);
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // root in a container: no user namespaces for the sandbox
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
           '--no-first-run', '--no-default-browser-check'],
    timeout,
  });
  try {
    const page = await browser.newPage();
    const console_lines = [];
    page.on('console', (m) => console_lines.push(m.text()));
    await page.goto(url, {waitUntil: 'load', timeout});
    await page.waitForSelector('body[data-done]', {timeout});
    const out = await page.$eval('#out', (e) => e.textContent);
    process.stdout.write(JSON.stringify({out: JSON.parse(out),
                                         console: console_lines}) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
