// The browser side of the relay's WebTransport test. Served by run.mjs as
// /?relay=PORT&name=BROADCAST[&native=BROADCAST][&jwt=TOKEN], bundled with esbuild. With a
// token every session carries it (`?jwt=` on the relay URL), and one without it must fail. It fetches the relay's
// certificate hash over HTTP, publishes a broadcast over one WebTransport session and
// subscribes to it over a second one, as well as to `native` (published by a raw-QUIC client of
// the relay, if given), then records everything in `window.__result` for the runner to check.
// WebSocket fallback is off on every session, so only WebTransport can pass.
//
// `done` turns true once the subscriptions are over; the publisher keeps writing until the
// runner calls `window.__stop()`, so other subscribers (the raw-QUIC one) can still join.

import * as Moq from "@moq/lite";

const params = new URLSearchParams(location.search);
const port = Number(params.get("relay"));
const name = params.get("name") ?? "browser/test";
const native = params.get("native");
const jwt = params.get("jwt");
const TRACK = "data";

// Frame sizes of every group, how many groups a subscriber waits for, and the publisher's pace.
const SIZES = [0, 1, 100, 1024, 16 * 1024, 64 * 1024];
const GROUPS = 3;
const GROUP_INTERVAL_MS = 100;
const STEP_TIMEOUT_MS = 15_000;

const result = {
	done: false,
	steps: [],
	fingerprint: null,
	publisher: null,
	subscriber: null,
	groups: {},
	nativeGroups: {},
	wrongFingerprint: null,
	noToken: null,
	error: null,
};
window.__result = result;

function step(what, detail) {
	result.steps.push(detail === undefined ? what : `${what}: ${detail}`);
	console.log(`[test] ${what}`, detail ?? "");
}

// Byte i of frame k in group g; run.mjs computes the same, and tests/browser.rs the same with
// salt 128 for its broadcast.
function pattern(g, k, size, salt = 0) {
	const out = new Uint8Array(size);
	for (let i = 0; i < size; i++) out[i] = (i * 31 + k * 7 + g * 13 + salt) & 0xff;
	return out;
}

function base64(bytes) {
	let s = "";
	for (let i = 0; i < bytes.length; i += 0x8000) {
		s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
	}
	return btoa(s);
}

function hexToBytes(hex) {
	const out = new Uint8Array(hex.length / 2);
	for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
	return out;
}

// Everything an error carries: @moq/lite races transports with Promise.any, so a failed
// connect is an AggregateError wrapping the WebTransportError.
function describe(err) {
	if (err instanceof AggregateError) {
		return `${err.message} [${err.errors.map(describe).join("; ")}]`;
	}
	if (err && typeof err === "object") {
		const parts = [`${err.name ?? "Error"}: ${err.message ?? String(err)}`];
		if ("source" in err) parts.push(`source=${err.source}`);
		if ("streamErrorCode" in err && err.streamErrorCode !== null) parts.push(`streamErrorCode=${err.streamErrorCode}`);
		return parts.join(" ");
	}
	return String(err);
}

function timeout(promise, what, ms = STEP_TIMEOUT_MS) {
	let timer;
	const expired = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
	});
	return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// The relay URL with the page's token, if it has one.
function relayUrl(scheme) {
	const url = new URL(`${scheme}://127.0.0.1:${port}/`);
	if (jwt) url.searchParams.set("jwt", jwt);
	return url;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The WebTransport options for a session pinned to `hash` (32 bytes), WebSocket fallback off.
function pinned(hash) {
	return {
		websocket: { enabled: false },
		webtransport: { serverCertificateHashes: [{ algorithm: "sha-256", value: hash }] },
	};
}

// On a failed connect, a bare WebTransport with the same options tells the browser's own error.
async function probe(url, hash) {
	const wt = new WebTransport(url, {
		serverCertificateHashes: [{ algorithm: "sha-256", value: hash }],
		protocols: ["moq-lite-04", "moq-lite-03", "moql"],
	});
	wt.closed.catch(() => {});
	try {
		await timeout(wt.ready, "bare WebTransport");
		const protocol = wt.protocol;
		wt.close();
		return `ready, protocol=${protocol}`;
	} catch (e) {
		return describe(e);
	}
}

let stop;
const stopped = new Promise((resolve) => {
	stop = resolve;
});
const sessions = [];
let publishing = Promise.resolve();

// Ends publishing and closes every session; the runner calls it once it is done with the page.
window.__stop = async () => {
	stop();
	try {
		await timeout(publishing, "publisher stop");
	} catch (e) {
		step("publisher stop", describe(e));
	}
	for (const session of sessions) session.close();
	step("closed");
};

async function publish(connection) {
	const broadcast = new Moq.Broadcast();
	connection.publish(Moq.Path.from(name), broadcast);
	step("published", name);
	const writers = [];
	for (;;) {
		const request = await Promise.race([broadcast.requested(), stopped]);
		if (!request) break;
		const track = request.track;
		if (track.name !== TRACK) {
			track.close(new Error(`no track ${track.name}`));
			continue;
		}
		step("relay subscribed", track.name);
		writers.push(write(track));
	}
	await Promise.all(writers);
	broadcast.close();
}

// Paced groups until stopped: the relay asks once for all its subscribers, which may join at
// any time and get the latest group from its first frame, then the live ones.
async function write(track) {
	let stopping = false;
	stopped.then(() => {
		stopping = true;
	});
	while (!stopping && !track.state.closed.peek()) {
		const group = track.appendGroup();
		SIZES.forEach((size, k) => group.writeFrame(pattern(group.sequence, k, size)));
		group.close();
		if (group.sequence < 2 * GROUPS) step("wrote group", group.sequence);
		await Promise.race([sleep(GROUP_INTERVAL_MS), stopped]);
	}
	track.close();
}

// Wait for `path` to be announced, then read GROUPS whole groups of it into `into`.
async function subscribe(connection, path, into) {
	const announced = connection.announced(Moq.Path.from(path.split("/")[0]));
	for (;;) {
		const entry = await timeout(announced.next(), `announce of ${path}`);
		if (!entry) throw new Error(`announcements ended before ${path} appeared`);
		if (entry.path === path && entry.active) break;
	}
	step("announced", path);
	const track = connection.consume(Moq.Path.from(path)).subscribe(TRACK, 0);
	while (Object.keys(into).length < GROUPS) {
		const group = await timeout(track.recvGroup(), `group of ${path}`);
		if (!group) throw new Error(`${path} ended early`);
		const frames = [];
		for (;;) {
			const frame = await timeout(group.readFrame(), `frame ${frames.length} of group ${group.sequence} of ${path}`);
			if (frame === undefined) break;
			frames.push(base64(frame));
		}
		into[group.sequence] = frames;
		step("received group", `${path} ${group.sequence} (${frames.length} frames)`);
	}
	track.close();
}

async function main() {
	step("page loaded", `relay port ${port}, WebTransport ${typeof WebTransport}`);
	const response = await timeout(fetch(`http://127.0.0.1:${port}/certificate.sha256`), "certificate fetch");
	const fingerprint = await response.text();
	result.fingerprint = fingerprint;
	step("certificate hash", `${response.status} ${fingerprint}`);
	if (!response.ok || !/^[0-9a-f]{64}$/.test(fingerprint)) throw new Error(`bad certificate hash ${JSON.stringify(fingerprint)}`);
	const hash = hexToBytes(fingerprint);
	const https = relayUrl("https");

	// A session pinning another certificate must be refused, whatever else works.
	const wrong = hash.map((b) => b ^ 0xff);
	try {
		const c = await timeout(Moq.Connection.connect(https, pinned(wrong)), "wrong-fingerprint connect");
		c.close();
		result.wrongFingerprint = { refused: false };
		step("wrong fingerprint ACCEPTED");
	} catch (e) {
		result.wrongFingerprint = { refused: true, error: describe(e) };
		step("wrong fingerprint refused", describe(e));
	}

	// Without the token the relay refuses the CONNECT (401): no session at all.
	if (jwt) {
		try {
			const bare = new URL(`https://127.0.0.1:${port}/`);
			const c = await timeout(Moq.Connection.connect(bare, pinned(hash)), "tokenless connect");
			c.close();
			result.noToken = { refused: false };
			step("session without a token ACCEPTED");
		} catch (e) {
			result.noToken = { refused: true, error: describe(e) };
			step("session without a token refused", describe(e));
		}
	}

	// The publisher uses the http:// form: @moq/lite fetches /certificate.sha256 itself (cross
	// origin, so through CORS) and pins it. The subscriber pins the hash fetched above.
	let publisher;
	try {
		publisher = await timeout(
			Moq.Connection.connect(relayUrl("http"), { websocket: { enabled: false } }),
			"publisher connect",
		);
	} catch (e) {
		step("bare WebTransport probe", await probe(https, hash));
		throw new Error(`publisher connect: ${describe(e)}`);
	}
	sessions.push(publisher);
	result.publisher = { version: publisher.version, url: publisher.url.toString() };
	step("publisher connected", publisher.version);
	const subscriber = await timeout(Moq.Connection.connect(https, pinned(hash)), "subscriber connect");
	sessions.push(subscriber);
	result.subscriber = { version: subscriber.version, url: subscriber.url.toString() };
	step("subscriber connected", subscriber.version);

	publishing = publish(publisher).catch((e) => step("publisher failed", describe(e)));
	await Promise.all([
		subscribe(subscriber, name, result.groups),
		native ? subscribe(subscriber, native, result.nativeGroups) : undefined,
	]);
}

main()
	.catch((e) => {
		result.error = describe(e);
		console.error(`[test] failed: ${result.error}`);
	})
	.finally(() => {
		result.done = true;
		console.log("[test] done");
	});
