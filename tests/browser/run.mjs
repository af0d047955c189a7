// Runs page.js in headless Debian Chromium against a relay on 127.0.0.1 and checks what the
// page reports.
//
//   node run.mjs RELAY_PORT [EXPECTED_SHA256] [--name BROADCAST] [--native BROADCAST] [--hold]
//                [--jwt TOKEN]
//       run the test; the relay serves QUIC on UDP RELAY_PORT and HTTP on TCP RELAY_PORT.
//       --name      the broadcast the page publishes (default browser/test-PID)
//       --native    a broadcast another client publishes (see tests/browser.rs) for the page
//                   to check too
//       --hold      once the page's own checks are done, keep its publisher going until a line
//                   or EOF on stdin, so another client can finish subscribing to it
//       --jwt       the page's sessions carry this token (`?jwt=`), and one without it must be
//                   refused
//   node run.mjs --build
//       only bundle page.js into dist/page.js
//
// Every console message of the page is printed. MOQ_BROWSER_NETLOG=FILE also writes Chromium's
// net log there (handshakes, WebTransport headers). Exit status: 0 every check passed, 1 a
// check failed, 2 the environment is missing something.

import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const SIZES = [0, 1, 100, 1024, 16 * 1024, 64 * 1024];
const GROUPS = 3;
const DEADLINE_MS = 90_000;
const HOLD_MS = 60_000;
// Added to the pattern of the native broadcast, so a mix-up of the two cannot pass.
const NATIVE_SALT = 128;

function pattern(g, k, size, salt = 0) {
	const out = Buffer.alloc(size);
	for (let i = 0; i < size; i++) out[i] = (i * 31 + k * 7 + g * 13 + salt) & 0xff;
	return out;
}

async function build() {
	const esbuild = await import("esbuild");
	await esbuild.build({
		entryPoints: [join(here, "page.js")],
		bundle: true,
		format: "esm",
		target: "chrome120",
		outfile: join(here, "dist/page.js"),
		logLevel: "warning",
	});
}

function serve(files) {
	return new Promise((resolve) => {
		const server = createServer((req, res) => {
			const path = new URL(req.url, "http://x").pathname;
			const file = files[path];
			if (!file) {
				res.writeHead(404).end();
				return;
			}
			res.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body);
		});
		server.listen(0, "127.0.0.1", () => resolve(server));
	});
}

function check(results, name, ok, detail) {
	results.push({ name, ok });
	console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
}

// Whether `groups` (sequence -> base64 frames) holds GROUPS or more groups of SIZES frames,
// each the pattern; with what is wrong or which groups came.
function exactGroups(groups, salt) {
	const sequences = Object.keys(groups ?? {}).map(Number);
	let exact = sequences.length >= GROUPS;
	const problems = [];
	for (const g of sequences) {
		const frames = groups[g];
		if (frames.length !== SIZES.length) {
			exact = false;
			problems.push(`group ${g}: ${frames.length} frames`);
			continue;
		}
		SIZES.forEach((size, k) => {
			const got = Buffer.from(frames[k], "base64");
			if (!got.equals(pattern(g, k, size, salt))) {
				exact = false;
				problems.push(`group ${g} frame ${k}: ${got.length} B, want ${size} B of the pattern`);
			}
		});
	}
	return [exact, problems.length ? problems.join("; ") : `groups ${sequences.join(",")}`];
}

function verify(result, expectedFingerprint, native, jwt) {
	const results = [];
	check(results, "page ran to the end without error", result.done && !result.error, result.error ?? undefined);
	if (expectedFingerprint) {
		check(
			results,
			"/certificate.sha256 as fetched by the page is the relay's fingerprint",
			result.fingerprint === expectedFingerprint,
			`got ${JSON.stringify(result.fingerprint)}`,
		);
	} else {
		check(results, "/certificate.sha256 fetched", /^[0-9a-f]{64}$/.test(result.fingerprint ?? ""));
	}
	// A refusal means something only if the same URL pinning the right hash gets in.
	check(
		results,
		"a session pinning a wrong fingerprint is refused, one pinning the right one is not",
		result.wrongFingerprint?.refused === true && !!result.subscriber,
		result.wrongFingerprint?.error ?? JSON.stringify(result.wrongFingerprint),
	);
	if (jwt) {
		check(
			results,
			"a session without the token is refused, the same one with it is not",
			result.noToken?.refused === true && !!result.subscriber,
			result.noToken?.error ?? JSON.stringify(result.noToken),
		);
	}
	check(results, "publisher session over WebTransport", !!result.publisher, JSON.stringify(result.publisher));
	check(results, "subscriber session over WebTransport", !!result.subscriber, JSON.stringify(result.subscriber));
	check(results, `${GROUPS} groups of ${SIZES.join("/")} B frames arrive byte-exact`, ...exactGroups(result.groups, 0));
	if (native) {
		check(
			results,
			`${GROUPS} groups of ${native} (a raw-QUIC publisher) arrive byte-exact over WebTransport`,
			...exactGroups(result.nativeGroups, NATIVE_SALT),
		);
	}
	const failed = results.filter((r) => !r.ok).length;
	console.log(`browser checks: ${results.length - failed} of ${results.length} passed`);
	return failed === 0;
}

const USAGE =
	"usage: node run.mjs RELAY_PORT [EXPECTED_SHA256] [--name BROADCAST] [--native BROADCAST] [--hold] [--jwt TOKEN] | --build";

function parseArgs(argv) {
	const args = { positional: [], name: `browser/test-${process.pid}`, native: null, hold: false, jwt: null };
	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		if (arg === "--hold") args.hold = true;
		else if (arg === "--name" || arg === "--native" || arg === "--jwt") {
			if (i + 1 >= argv.length) return null;
			args[arg.slice(2)] = argv[++i];
		} else if (arg.startsWith("--")) return null;
		else args.positional.push(arg);
	}
	return args;
}

// Resolves on a line or EOF on stdin, or after `ms`; says which.
function stdinLine(ms) {
	return new Promise((resolve) => {
		const timer = setTimeout(() => finish(`no line on stdin in ${ms} ms`), ms);
		const onData = (chunk) => {
			if (chunk.includes("\n")) finish(`stdin: ${chunk.toString().trim()}`);
		};
		const onEnd = () => finish("stdin closed");
		function finish(why) {
			clearTimeout(timer);
			process.stdin.off("data", onData).off("end", onEnd).pause();
			resolve(why);
		}
		process.stdin.on("data", onData).on("end", onEnd);
	});
}

async function main() {
	if (process.argv[2] === "--build") {
		await build();
		return 0;
	}
	const args = parseArgs(process.argv.slice(2));
	const port = Number(args?.positional[0]);
	if (!args || args.positional.length > 2 || !Number.isInteger(port) || port <= 0 || port > 65535) {
		console.error(USAGE);
		return 2;
	}
	if (!existsSync(CHROMIUM)) {
		console.error(`${CHROMIUM} is missing: apt-get install -y chromium`);
		return 2;
	}
	const { chromium } = await import("playwright-core");
	await build();

	const files = {
		"/": { type: "text/html", body: readFileSync(join(here, "index.html")) },
		"/page.js": { type: "text/javascript", body: readFileSync(join(here, "dist/page.js")) },
		"/favicon.ico": { type: "image/x-icon", body: "" },
	};
	const server = await serve(files);
	const pagePort = server.address().port;

	const netlog = process.env.MOQ_BROWSER_NETLOG;
	const browser = await chromium.launch({
		executablePath: CHROMIUM,
		headless: true,
		// Root needs --no-sandbox; the network flags keep Chromium from dialing out of a closed
		// network. QUIC stays on: WebTransport needs it.
		args: [
			"--no-sandbox",
			"--disable-gpu",
			"--no-first-run",
			"--disable-background-networking",
			"--disable-component-update",
			"--disable-sync",
			...(netlog ? [`--log-net-log=${netlog}`, "--net-log-capture-mode=Everything"] : []),
		],
	});
	let result;
	try {
		console.log(`chromium ${browser.version()}; page http://127.0.0.1:${pagePort}/, relay 127.0.0.1:${port}`);
		const page = await browser.newPage();
		page.on("console", (msg) => console.log(`[page ${msg.type()}] ${msg.text()}`));
		page.on("pageerror", (err) => console.log(`[page uncaught] ${err.stack ?? err}`));
		page.on("requestfailed", (req) => console.log(`[page request failed] ${req.url()}: ${req.failure()?.errorText}`));
		const query = new URLSearchParams({
			relay: port,
			name: args.name,
			...(args.native ? { native: args.native } : {}),
			...(args.jwt ? { jwt: args.jwt } : {}),
		});
		await page.goto(`http://127.0.0.1:${pagePort}/?${query}`);
		let finished = false;
		try {
			await page.waitForFunction(() => window.__result?.done === true, null, { timeout: DEADLINE_MS });
			finished = true;
		} catch (e) {
			console.log(`page did not finish in ${DEADLINE_MS} ms: ${e.message}`);
		}
		if (finished) {
			const error = await page.evaluate(() => window.__result.error);
			if (args.hold && !error) {
				console.log("page done; its publisher goes on until a line on stdin");
				console.log(`released: ${await stdinLine(HOLD_MS)}`);
			}
			await page.evaluate(() => window.__stop());
		}
		result = await page.evaluate(() => window.__result);
	} finally {
		await browser.close();
		server.close();
	}
	const counts = (groups) => Object.fromEntries(Object.entries(groups ?? {}).map(([g, f]) => [g, f.length]));
	const summary = { ...result, groups: counts(result?.groups), nativeGroups: counts(result?.nativeGroups) };
	console.log(`page result: ${JSON.stringify(summary, null, 2)}`);
	return verify(result ?? {}, args.positional[1], args.native, args.jwt) ? 0 : 1;
}

main().then(
	(code) => process.exit(code),
	(err) => {
		console.error(err.stack ?? err);
		process.exit(2);
	},
);
