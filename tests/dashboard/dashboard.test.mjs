// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core): every application shown with its state, live numbers,
// Drain and Enable through the confirmation, the token field when sluice
// wants a token, and the banner when sluice stops answering.
//
//   node dashboard.test.mjs URL OUTFILE.png [--token T] [--settle SECONDS]
//
// URL is the admin server's; its first application is left up and the
// second is drained and enabled. Prints one line per check; exits 0 when
// all pass, 1 at the first failure.
import { chromium } from "playwright-core";

const [url, outfile, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : dflt);
const token = opt("--token", "");
const settle = Number(opt("--settle", "3"));
if (!url || !outfile) {
  console.error("usage: node dashboard.test.mjs URL OUTFILE.png [--token T] [--settle SECONDS]");
  process.exit(2);
}

function check(ok, what) {
  if (!ok) throw new Error("FAIL " + what);
  console.log("ok " + what);
}

async function apiApps() {
  const r = await fetch(new URL("/api/applications", url));
  return r.json();
}

const row = (page, name) => page.locator("#apps tr", { has: page.locator("td:first-child div", { hasText: new RegExp("^" + name + "$") }) });
const badge = (page, name) => row(page, name).locator(".state");

/* Clicks a row's button, accepting the confirmation it asks for. */
async function click(page, name, button) {
  let asked = "";
  page.once("dialog", d => { asked = d.message(); d.accept(); });
  await row(page, name).locator("button", { hasText: button }).click();
  check(asked.includes(name), button + " " + name + " asks for confirmation: " + JSON.stringify(asked));
}

async function waitState(page, name, states, ms) {
  const rx = new RegExp("^(" + states.join("|") + ")$");
  await badge(page, name).filter({ hasText: rx }).waitFor({ timeout: ms });
  return badge(page, name).textContent();
}

async function run(page, errors) {
  await page.goto(url);
  const apps = await apiApps();
  check(apps.length >= 2, apps.length + " applications in the API");
  await page.locator("#apps tr").nth(apps.length - 1).waitFor({ timeout: 5000 });
  check((await page.locator("#apps tr").count()) === apps.length, "one row per application");
  for (const a of apps) {
    const shown = await badge(page, a.name).textContent();
    const cls = await badge(page, a.name).getAttribute("class");
    check(shown === a.state && cls.includes(a.state), a.name + " shown " + shown + " (" + cls + ")");
  }
  await page.waitForFunction(() => /^live/.test(document.getElementById("status").textContent), null, { timeout: 5000 });
  check(true, "status line says live");

  // Numbers appear from the second poll on; traffic flows meanwhile.
  await page.waitForTimeout(settle * 1000);
  const first = apps[0].name, second = apps[1].name;
  const rps = Number(await row(page, first).locator("td").nth(2).textContent());
  check(rps > 0, first + " requests/s " + rps);
  const p99 = await row(page, first).locator("td").nth(4).textContent();
  check(/ms$/.test(p99), first + " p99 " + p99);
  const points = await row(page, first).locator("polyline.rps").getAttribute("points");
  check(points && points.split(" ").length >= 2, first + " chart has a line");

  if (token) {
    check(!(await page.locator("#token-row").isVisible()), "no token field before it is needed");
    await click(page, second, "Drain");
    await page.locator("#token-row").waitFor({ state: "visible", timeout: 5000 });
    const said = await page.locator("#message").textContent();
    check(said.includes("401"), "a drain without the token shows the refusal: " + said);
    check((await badge(page, second).textContent()) === "up", second + " still up");
    await page.fill("#token", token);
  }
  await click(page, second, "Drain");
  const drained = await waitState(page, second, ["draining", "maintenance"], 5000);
  check(true, second + " shown " + drained + " after Drain");
  check(["draining", "maintenance"].includes((await apiApps())[1].state), second + " drained in the API");

  await click(page, first, "Drain");
  await page.locator("#message", { hasText: "409" }).waitFor({ timeout: 5000 });
  check(true, "draining the last one up shows the 409: " + (await page.locator("#message").textContent()));
  check((await badge(page, first).textContent()) === "up", first + " still up");

  await click(page, second, "Enable");
  await waitState(page, second, ["up"], 5000);
  check(true, second + " shown up after Enable");

  await page.waitForTimeout(1200);   // the message stays; one more poll for the chart
  await page.evaluate(() => { document.getElementById("message").style.display = "none"; });
  await page.screenshot({ path: outfile, fullPage: true });
  check(true, "screenshot " + outfile);
  check(errors.length === 0, "no console errors " + JSON.stringify(errors));

  // sluice stops answering: the page must say so.
  await page.route("**/api/applications", route => route.abort());
  await page.locator("#banner", { hasText: "not answering" }).waitFor({ timeout: 5000 });
  const banner = await page.locator("#banner").textContent();
  check(/last update/.test(banner), "banner: " + banner);
  await page.unroute("**/api/applications");
  await page.locator("#banner").waitFor({ state: "hidden", timeout: 5000 });
  check(true, "banner gone once sluice answers again");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
let status = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 300 } });
  const errors = [];
  // The refusals this test provokes (401, 409) are logged by the browser
  // as failed loads; anything else is a fault of the page.
  const provoked = /^Failed to load resource: the server responded with a status of 40[19] /;
  page.on("console", m => { if (m.type() === "error" && !provoked.test(m.text())) errors.push(m.text()); });
  page.on("pageerror", e => errors.push(String(e)));
  await run(page, errors);
  console.log("all passed");
} catch (e) {
  console.log(String(e.message || e));
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
