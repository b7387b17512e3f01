// Drives Debian's Chromium (headless, through playwright-core) against the local server, for the
// end-to-end tests in tests/browser.rs. The pages load the real hyperclayjs from its CDN address;
// the network is closed to everything but the local server, so the library must come from the
// server's own copy (every other request is aborted and reported).
//
//   node drive.mjs SCENARIO BASE_URL [ARGS...]
//
// Prints one JSON object per line: {"event": "ready"} when it waits for the test to act, and
// {"event": "done", ...results} at the end. Reads a line on stdin where a scenario waits.

import { chromium } from "playwright-core";
import readline from "node:readline";

const [scenario, base, ...args] = process.argv.slice(2);
const say = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));
const input = readline.createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const nextLine = async () => (await lines.next()).value;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext();
const blocked = [];
const requested = [];
await context.route(
  (url) => url.hostname !== "localhost" && url.hostname !== "127.0.0.1",
  (route) => {
    blocked.push(route.request().url());
    route.abort();
  },
);
context.on("request", (r) => requested.push(r.method() + " " + r.url()));
const consoleLines = [];

// Opens the page and waits until hyperclayjs has loaded and live sync has its stream open.
async function open(path, { stream = true, also = null } = {}) {
  const page = await context.newPage();
  const alsoSeen = also ? page.waitForResponse((r) => also.test(r.url()), { timeout: 15000 }) : null;
  page.on("console", (m) => consoleLines.push(m.text()));
  page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));
  const streamOpen = stream
    ? page.waitForResponse((r) => /\/_\/(sync\?|live-sync\/stream)/.test(r.url()), {
        timeout: 15000,
      })
    : null;
  await page.goto(base + path);
  await page.waitForFunction(() => window.hyperclay && window.hyperclay.savePage, null, {
    timeout: 15000,
  });
  if (streamOpen) await streamOpen;
  if (alsoSeen) await alsoSeen;
  return page;
}

const text = (page, selector) =>
  page.evaluate((s) => document.querySelector(s)?.textContent ?? null, selector);

// Waits until `selector` reads `wanted`; answers the milliseconds it took, or null.
async function until(page, selector, wanted, timeout) {
  const start = Date.now();
  try {
    await page.waitForFunction(
      ([s, w]) => document.querySelector(s)?.textContent === w,
      [selector, wanted],
      { timeout, polling: 10 },
    );
    return Date.now() - start;
  } catch {
    return null;
  }
}

const scenarios = {
  // Two tabs of one app: an edit saved in one appears in the other.
  async two_tabs() {
    const a = await open(args[0]);
    const b = await open(args[0]);
    const wanted = "typed in tab A " + Date.now();
    const start = Date.now();
    const saved = await a.evaluate(async (w) => {
      document.querySelector("#note").textContent = w;
      const done = new Promise((ok) =>
        document.addEventListener("hyperclay:save-saved", () => ok(true), { once: true }),
      );
      window.hyperclay.savePage();
      return Promise.race([done, new Promise((ok) => setTimeout(() => ok(false), 10000))]);
    }, wanted);
    const shown = await until(b, "#note", wanted, 5000);
    return { saved, wanted, shown_after_ms: shown === null ? null : Date.now() - start };
  },

  // A tab stays open while the test changes the file through the mount.
  async outside_edit() {
    const page = await open(args[0]);
    say("ready");
    const wanted = await nextLine();
    const start = Date.now();
    const shown = await until(page, "#note", wanted, 10000);
    return { shown_after_ms: shown === null ? null : Date.now() - start, now: await text(page, "#note") };
  },

  // The library's own upload call, then the stored file read back from the address it answered.
  async upload() {
    const page = await open(args[0]);
    return page.evaluate(async () => {
      const bytes = new Uint8Array(3000).map((_, i) => (i * 7) % 251);
      const file = new File([bytes], "photo.png", { type: "image/png" });
      const answer = await window.hyperclay.uploadFile(file);
      const served = await fetch(answer.urls[0]);
      const back = new Uint8Array(await served.arrayBuffer());
      return {
        answer,
        status: served.status,
        same: back.length === bytes.length && back.every((b, i) => b === bytes[i]),
      };
    });
  },

  // A save that wipes the page's data: the data-loss panel shows, and reverting brings it back.
  async data_loss() {
    const page = await open(args[0], { also: /\/_\/data-loss\?/ });
    const before = await page.locator("#todos li").count();
    await page.evaluate(() => {
      document.querySelectorAll("#todos li").forEach((li) => li.remove());
      window.hyperclay.savePage();
    });
    const revert = page.locator('.hcdl [data-dg="revert"]');
    await revert.waitFor({ state: "attached", timeout: 10000 });
    const title = await page.locator(".hcdl .dg-title").textContent();
    await page.locator(".hcdl .dg-chip").click();
    const reloaded = page.waitForEvent("load", { timeout: 10000 });
    await revert.click();
    await reloaded;
    await page.waitForFunction(() => document.querySelectorAll("#todos li").length > 0, null, {
      timeout: 10000,
    });
    const after = await page.locator("#todos li").allTextContents();
    const chipAfter = await page.locator(".hcdl").count();
    return { before, title, after, chipAfter };
  },

  // A page uploads files whose script would save over another app if it ran with this origin;
  // each is then opened as a page and framed. args: the uploading page, a control site holding
  // the same script (it must run: the check can see a script that runs).
  async hostile_upload() {
    const page = await context.newPage();
    await page.goto(base + args[0]);
    const names = ["x.shtml", "x.hxt", "x.SHTML", "x.aspx", "x.config", "x.dtd", "x.svg"];
    const urls = await page.evaluate(async (names) => {
      // No "<" or "&" in the script, so it is the same in HTML and in XML.
      const script = (name) =>
        "fetch('/ran-by-upload?" + name + "=' + encodeURIComponent(String(location.origin)));" +
        "const lt = String.fromCharCode(60);" +
        "fetch('/_/save', {method: 'POST', headers: {'Content-Type': 'text/html', 'Page-URL': '/victim'}," +
        " body: lt + '!doctype html>' + lt + 'p>overwritten by an upload'});";
      const file = (name) =>
        name.endsWith(".svg")
          ? `<svg xmlns="http://www.w3.org/2000/svg"><script>${script(name)}</script></svg>`
          : `<html xmlns="http://www.w3.org/1999/xhtml"><body><script>${script(name)}</script></body></html>`;
      const urls = [];
      for (const name of names) {
        const answer = await fetch("/_/upload", {
          method: "POST",
          headers: { "Content-Type": "application/json", "Page-URL": location.href },
          body: JSON.stringify({ fileName: name, fileBody: btoa(file(name)) }),
        });
        const body = await answer.json();
        urls.push({ name, status: answer.status, url: body.urls ? new URL(body.urls[0], location.href).href : null });
      }
      return urls;
    }, names);
    const opened = [];
    for (const { name, url } of urls) {
      if (!url) continue;
      // Opened as a page: a download (goto throws) or a sandboxed document.
      const tab = await context.newPage();
      let how = "shown";
      try {
        await tab.goto(url, { timeout: 10000 });
      } catch (e) {
        how = String(e.message).includes("Download is starting") ? "download" : "error: " + e.message;
      }
      opened.push({ name, how });
      await tab.close();
      // Framed by the page that uploaded it.
      await page.evaluate((url) => {
        const frame = document.createElement("iframe");
        frame.src = url;
        document.body.append(frame);
      }, url);
    }
    // The control: the same script in a site runs, and its request is seen.
    const control = await context.newPage();
    await control.goto(base + args[1]);
    await control.waitForResponse((r) => r.url().includes("/ran-by-upload?control"), { timeout: 10000 }).catch(() => {});
    // Time for any script that did start to send its requests.
    await page.waitForTimeout(1500);
    return { urls, opened };
  },

  // Each page as a new user meets it: it must load hyperclayjs (so it is in edit mode, as its
  // owner), offer something to edit and a way to save. The scenario clicks the first editable
  // element, types at its end, clicks the page's save button (Ctrl-S where it has none), waits
  // for the library to say the save landed, then reloads and reads the element again.
  async edit_samples() {
    const pages = [];
    for (const path of args) {
      const page = await context.newPage();
      page.on("console", (m) => consoleLines.push(m.text()));
      page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));
      // A warning about unsaved changes on reload would mean the save did not land: say so.
      const dialogs = [];
      page.on("dialog", (d) => {
        dialogs.push(d.type());
        d.accept();
      });
      await page.goto(base + path);
      const library = await page
        .waitForFunction(() => window.hyperclay && window.hyperclay.savePage, null, { timeout: 15000 })
        .then(() => true, () => false);
      const title = await page.title();
      if (!library) {
        pages.push({ path, title, library });
        continue;
      }
      const editable = page.locator('[contenteditable]:not([contenteditable="false"])').first();
      // Edit mode makes the marked elements editable once the document is ready.
      const found = await editable.waitFor({ timeout: 10000 }).then(() => true, () => false);
      if (!found) {
        pages.push({ path, title, library, editable: false });
        continue;
      }
      // What the element is, so the reloaded page can find it again.
      const selector = await editable.evaluate((el) => {
        const all = [...document.querySelectorAll(el.tagName)];
        return el.id ? "#" + el.id : `${el.tagName.toLowerCase()} >> nth=${all.indexOf(el)}`;
      });
      const wanted = " typed in " + path + " " + Date.now();
      await editable.click();
      await page.keyboard.press("Control+End");
      await page.keyboard.type(wanted);
      await page.evaluate(() => {
        window.__saved = new Promise((ok) => {
          document.addEventListener("hyperclay:save-saved", () => ok(true), { once: true });
          setTimeout(() => ok(false), 10000);
        });
      });
      const button = page.locator("[trigger-save]").first();
      const how = (await button.count()) > 0 ? "button" : "ctrl-s";
      if (how === "button") await button.click();
      else await page.keyboard.press("Control+S");
      const saved = await page.evaluate(() => window.__saved);
      const status = await page.evaluate(() => document.documentElement.getAttribute("savestatus"));
      await page.reload();
      const after = await page.locator(selector).first().textContent();
      pages.push({ path, title, library, editable: true, selector, wanted, how, saved, status, after, dialogs });
      await page.close();
    }
    return { pages };
  },

  // A page linking the host's Tailwind stylesheet gets its classes styled.
  async tailwind() {
    const page = await open(args[0], { stream: false });
    return page.evaluate(() => {
      const style = getComputedStyle(document.querySelector("#box"));
      return { padding: style.paddingTop, display: style.display };
    });
  },

  // The folder listing and the not-found page, as a browser shows them: their structure, the
  // parent link followed, and a screenshot of each (args[0]: where to save them).
  async listing() {
    const page = await context.newPage();
    const read = () =>
      page.evaluate(() => ({
        title: document.title,
        h1: document.querySelector("h1")?.textContent ?? null,
        summary: document.querySelector("p.summary")?.textContent ?? null,
        headers: [...document.querySelectorAll("thead th")].map((th) => th.textContent),
        parent: document.querySelector("tr.parent a")?.getAttribute("href") ?? null,
        rows: [...document.querySelectorAll("tbody tr:not(.parent)")].map((tr) => ({
          kind: tr.className,
          name: tr.querySelector("td.name a")?.textContent ?? null,
          href: tr.querySelector("td.name a")?.getAttribute("href") ?? null,
          size: tr.querySelector("td.size")?.textContent ?? null,
          bytes: tr.querySelector("td.size span")?.getAttribute("title") ?? null,
          modified: tr.querySelector("td.modified time")?.getAttribute("datetime") ?? null,
          sync: tr.querySelector("td.sync")?.textContent ?? null,
        })),
      }));
    const top = await page.goto(base + "/");
    const root = { status: top.status(), type: top.headers()["content-type"], ...(await read()) };
    await page.screenshot({ path: args[0] + "/listing-top.png", fullPage: true });
    await page.click("tr.folder td.name a");
    await page.waitForLoadState();
    const folder = { url: page.url(), ...(await read()) };
    await page.screenshot({ path: args[0] + "/listing-folder.png", fullPage: true });
    await page.click("tr.parent a");
    await page.waitForLoadState();
    const back = page.url();
    const missing = await page.goto(base + "/no/such-page");
    const notFound = {
      status: missing.status(),
      type: missing.headers()["content-type"],
      title: await page.title(),
      h1: await text(page, "h1"),
      links: await page.evaluate(() => [...document.querySelectorAll("a")].map((a) => a.getAttribute("href"))),
    };
    await page.screenshot({ path: args[0] + "/not-found.png", fullPage: true });
    return { root, folder, back, notFound };
  },
};

try {
  const result = await scenarios[scenario]();
  say("done", { ...result, blocked, requested, console: consoleLines.slice(-40) });
} catch (e) {
  say("done", { error: String(e && e.stack ? e.stack : e), blocked, requested, console: consoleLines.slice(-40) });
} finally {
  input.close();
  await browser.close();
}
