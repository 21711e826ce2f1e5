// A small W3C WebDriver client (https://www.w3.org/TR/webdriver2/) for the browser test:
// starts Debian's chromedriver on a free port, opens one headless chromium session and
// speaks the protocol over HTTP with Node's built-in fetch. No npm packages.
//
//   const b = await startBrowser({ width: 1800, height: 1000, deviceScaleFactor: 2 });
//   await b.navigate(url);
//   const el = await b.find('#show');
//   await b.click(el);
//   ...
//   await b.quit();   // also done on process exit, SIGINT, SIGTERM and SIGHUP
//
// Two chromedriver extensions beyond W3C, both over the same HTTP connection
// (POST /session/{id}/goog/cdp/execute): the exact viewport and device pixel ratio
// (--window-size sets the outer window, not the viewport) and a script run before the
// page's own, which records uncaught exceptions and unhandled rejections (pageErrors()).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';  // the W3C web element identifier
const COMMAND_TIMEOUT_MS = 120000;

const live = new Set();  // browsers not yet quit: killed on exit
function killAllSync() {
  for (const b of live) b.killSync();
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAllSync();
    process.exit(128 + { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[sig]);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class WebDriverError extends Error {
  constructor(what, status, value) {
    super(`WebDriver ${what}: ${value.error || 'error'} (HTTP ${status}): ${value.message || JSON.stringify(value)}`);
    this.error = value.error;
  }
}

// A function (or a script body) as the body of an Execute Script call: functions are
// called with the call's arguments.
function scriptOf(fn) {
  return typeof fn === 'function' ? `return (${fn}).apply(null, arguments);` : fn;
}

// Run in each new document before the page's own scripts: records uncaught exceptions and
// unhandled promise rejections (what DevTools reports as Runtime.exceptionThrown).
const PAGE_ERRORS = `
  window.__qsPageErrors = [];
  window.addEventListener('error', (e) => window.__qsPageErrors.push(
    (e.error && e.error.stack) || \`\${e.message} (\${e.filename}:\${e.lineno}:\${e.colno})\`));
  window.addEventListener('unhandledrejection', (e) => window.__qsPageErrors.push(
    'unhandled rejection: ' + ((e.reason && e.reason.stack) || String(e.reason))));`;

export class Browser {
  constructor(proc, base, userDataDir, output) {
    this.proc = proc;
    this.base = base;
    this.userDataDir = userDataDir;
    this.output = output;  // chromedriver's and chromium's stdout and stderr, the last 64 KiB
    this.session = null;
    live.add(this);
  }

  // One WebDriver command; returns its value or throws WebDriverError.
  async cmd(method, path, body) {
    const what = `${method} ${path}`;
    let res;
    try {
      res = await fetch(this.base + path, {
        method, headers: { 'Content-Type': 'application/json; charset=utf-8' },
        body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS) });
    } catch (e) {
      throw new Error(`WebDriver ${what}: no answer from chromedriver (${e.message})\n${this.output()}`);
    }
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`WebDriver ${what}: HTTP ${res.status}, not JSON: ${text.slice(0, 500)}`);
    }
    if (!res.ok || (json.value && json.value.error)) throw new WebDriverError(what, res.status, json.value || {});
    return json.value;
  }

  s(path) {
    if (!this.session) throw new Error('WebDriver: no session');
    return `/session/${this.session}${path}`;
  }

  // Chrome DevTools Protocol command through chromedriver.
  cdp(cmd, params = {}) {
    return this.cmd('POST', this.s('/goog/cdp/execute'), { cmd, params });
  }

  navigate(url) {
    return this.cmd('POST', this.s('/url'), { url });
  }

  // Runs fn (a function or a script body) in the page with args (JSON, or elements from
  // find()); a returned promise is awaited (W3C Execute Script).
  execute(fn, ...args) {
    return this.cmd('POST', this.s('/execute/sync'), { script: scriptOf(fn), args });
  }

  // Runs fn(...args, done) in the page; resolves with what it passes to done.
  executeAsync(fn, ...args) {
    return this.cmd('POST', this.s('/execute/async'), { script: scriptOf(fn), args });
  }

  // Polls fn(arg) in the page (every animation frame, or 10 ms) until it returns a truthy
  // value, which is returned; throws after timeoutMs.
  async waitForFunction(fn, arg, { timeout = 30000 } = {}) {
    const r = await this.executeAsync(`
      const [arg, timeout, done] = arguments;
      const fn = ${fn};
      const t0 = performance.now();
      const poll = () => {
        let v;
        try {
          v = fn(arg);
        } catch (e) {
          return done({ error: String((e && e.stack) || e) });
        }
        if (v) return done({ value: v });
        if (performance.now() - t0 > timeout) return done({ timedOut: true });
        let fired = false;
        const next = () => { if (!fired) { fired = true; poll(); } };
        requestAnimationFrame(next);
        setTimeout(next, 10);
      };
      poll();`, arg, timeout);
    if (r.error) throw new Error(`waitForFunction: ${r.error}`);
    if (r.timedOut) throw new Error(`waitForFunction: not true after ${timeout} ms: ${fn}`);
    return r.value;
  }

  // Elements by CSS selector: find() throws when there is none.
  async find(css) {
    return this.cmd('POST', this.s('/element'), { using: 'css selector', value: css });
  }

  async findAll(css) {
    return this.cmd('POST', this.s('/elements'), { using: 'css selector', value: css });
  }

  el(e, path) {
    return this.s(`/element/${e[ELEMENT]}${path}`);
  }

  async $(e) {
    return typeof e === 'string' ? this.find(e) : e;
  }

  // Element Click: scrolled into view and clicked at its centre (an error if another
  // element would receive the click). An <option> is selected in its <select>.
  async click(e) {
    return this.cmd('POST', this.el(await this.$(e), '/click'), {});
  }

  async clear(e) {
    return this.cmd('POST', this.el(await this.$(e), '/clear'), {});
  }

  // Types text into the element (key events per character).
  async sendKeys(e, text) {
    return this.cmd('POST', this.el(await this.$(e), '/value'), { text });
  }

  async attribute(e, name) {
    return this.cmd('GET', this.el(await this.$(e), `/attribute/${encodeURIComponent(name)}`));
  }

  async property(e, name) {
    return this.cmd('GET', this.el(await this.$(e), `/property/${encodeURIComponent(name)}`));
  }

  async displayed(e) {
    return this.cmd('GET', this.el(await this.$(e), '/displayed'));
  }

  // The element's rectangle in CSS pixels relative to the viewport (W3C Get Element Rect
  // is relative to the document; Perform Actions' origin 'viewport' wants the viewport).
  async boundingBox(e) {
    return this.execute((el) => {
      const r = el.getBoundingClientRect();
      return { x: r.x, y: r.y, width: r.width, height: r.height };
    }, await this.$(e));
  }

  // Moves the mouse to (x, y) CSS pixels in the viewport (Perform Actions).
  async mouseMove(x, y) {
    await this.cmd('POST', this.s('/actions'), {
      actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' },
                  actions: [{ type: 'pointerMove', duration: 0, origin: 'viewport', x, y }] }] });
  }

  // The viewport as PNG bytes.
  async screenshot() {
    return Buffer.from(await this.cmd('GET', this.s('/screenshot')), 'base64');
  }

  // Uncaught exceptions and unhandled rejections of the current page so far.
  pageErrors() {
    return this.execute(() => window.__qsPageErrors || ['the page-error recorder did not run']);
  }

  // Ends the session (chromium exits) and chromedriver; removes the profile.
  async quit() {
    if (!live.has(this)) return;
    try {
      if (this.session) await this.cmd('DELETE', this.s(''));
    } catch (e) {
      console.error(`WebDriver: closing the session failed: ${e.message}`);
    } finally {
      this.session = null;
      const exited = this.proc.exitCode !== null || this.proc.signalCode !== null ? Promise.resolve()
        : new Promise((r) => this.proc.once('exit', r));
      this.killSync('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      this.killSync();
    }
  }

  // chromedriver's process group (chromedriver and the chromium it started) signalled now;
  // SIGKILL also reaches a chromium left behind by a chromedriver that already exited.
  killSync(signal = 'SIGKILL') {
    if (signal === 'SIGKILL' || (this.proc.exitCode === null && this.proc.signalCode === null)) {
      try {
        process.kill(-this.proc.pid, signal);
      } catch {
        // the whole group is gone
      }
    }
    if (signal === 'SIGKILL') {
      live.delete(this);
      rmSync(this.userDataDir, { recursive: true, force: true });
    }
  }
}

async function launch(chromedriver, port) {
  // Its own process group, so that killing it also kills the chromium it started.
  const proc = spawn(chromedriver, [`--port=${port}`], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  const take = (d) => { out = (out + d).slice(-65536); };
  proc.stdout.on('data', take);
  proc.stderr.on('data', take);
  const failed = new Promise((resolve) => {
    proc.on('error', (e) => resolve(`cannot run ${chromedriver}: ${e.message}`));
    proc.on('exit', (code, sig) => resolve(`${chromedriver} exited (${sig || code})`));
  });
  return { proc, output: () => out, failed };
}

// Starts chromedriver and a headless chromium session with a fresh profile.
export async function startBrowser({
  chromium = process.env.QS_CHROMIUM || '/usr/bin/chromium',
  chromedriver = process.env.QS_CHROMEDRIVER || '/usr/bin/chromedriver',
  width = 1280, height = 800, deviceScaleFactor = 1, scriptTimeoutMs = 60000,
} = {}) {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {  // the free port may be taken meanwhile
    const port = await freePort();
    const userDataDir = mkdtempSync(join(tmpdir(), 'qs-chromium-'));
    const { proc, output, failed } = await launch(chromedriver, port);
    const b = new Browser(proc, `http://127.0.0.1:${port}`, userDataDir, output);
    let gone = null;
    failed.then((why) => { gone = why; });
    // Ready when GET /status says so (within 20 s).
    let ready = false;
    for (const t0 = Date.now(); !ready && gone === null && Date.now() - t0 < 20000;) {
      try {
        ready = (await b.cmd('GET', '/status')).ready === true;
      } catch {
        // not listening yet
      }
      if (!ready) await sleep(50);
    }
    if (!ready) {
      lastError = `${gone || 'chromedriver not ready after 20 s'}\n${output()}`;
      b.killSync();
      continue;
    }
    try {
      const r = await b.cmd('POST', '/session', {
        capabilities: {
          alwaysMatch: {
            browserName: 'chrome',
            timeouts: { script: scriptTimeoutMs, pageLoad: 60000, implicit: 0 },
            'goog:chromeOptions': {
              binary: chromium,
              // --remote-debugging-pipe: chromedriver talks to chromium over a pipe, not a
              // DevTools websocket on "localhost", which a root without /etc/hosts (like
              // ../shared/tools/fresh-debian.sh's) cannot resolve: "unable to connect to renderer".
              args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                     '--disable-background-networking', '--disable-component-update', '--disable-sync',
                     '--remote-debugging-pipe', `--user-data-dir=${userDataDir}`],
            },
          },
        },
      });
      b.session = r.sessionId;
      await b.cdp('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor, mobile: false,
                                                          screenWidth: width, screenHeight: height });
      await b.cdp('Page.addScriptToEvaluateOnNewDocument', { source: PAGE_ERRORS });
      return b;
    } catch (e) {
      await b.quit();
      throw new Error(`cannot start ${chromium} through ${chromedriver}: ${e.message}\n${output()}`);
    }
  }
  throw new Error(`cannot start ${chromedriver}: ${lastError}`);
}
