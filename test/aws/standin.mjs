// standin: the fauxqs SNS/SQS emulator behind a SigV4 verifier, both on 127.0.0.1 only, for the tests.
//
//   node test/aws/standin.mjs DIR REGION
//
// fauxqs checks no signature, so every request first goes through
// verify() of sigv4.mjs with the keys of DIR/keys (one "KEYID SECRET
// [TOKEN]" a line, read again for every request): region REGION, service
// sns for the Query protocol and sqs for the JSON protocol, host,
// x-amz-date, content-type and every x-amz-* header signed.  A request
// that fails is answered as AWS answers (403 SignatureDoesNotMatch,
// InvalidClientTokenId...) and appended to DIR/rejected.log; one that
// passes is forwarded to fauxqs and noted in DIR/accepted.log as
// "KEYID SERVICE ACTION".  The port is written to DIR/port once listening.
//
// Under /_standin/ (unsigned, for the tests' own set-up): POST sqs/ACTION
// and sns/ACTION with a JSON body of parameters, straight to fauxqs;
// POST fault {action, status, code, count, entry}: the next count
// requests of that action fail with that answer (entry: SQS batch
// entries fail instead, SenderFault false); GET queue/NAME: fauxqs's
// view of a queue.
import { appendFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import { buildApp } from "fauxqs";
import { verify } from "./sigv4.mjs";

const [dir, region] = process.argv.slice(2);
if (!dir || !region) {
	console.error("usage: standin.mjs DIR REGION");
	process.exit(64);
}
// A stand-in left behind by a killed test run stops by itself.
setTimeout(() => process.exit(0), 3 * 3600 * 1000).unref();

const app = buildApp({ logger: false });
await app.listen({ host: "127.0.0.1", port: 0 });
const emuPort = app.server.address().port;
const faults = [];

function keys() {
	const m = new Map();
	let text = "";
	try { text = readFileSync(`${dir}/keys`, "utf8"); } catch { /* none yet */ }
	for (const line of text.split("\n")) {
		const [id, secret, token] = line.trim().split(/\s+/);
		if (id && secret) m.set(id, { secret, token });
	}
	return m;
}

function protocol(headers) {
	const ct = headers["content-type"] || "";
	if (ct.startsWith("application/x-amz-json-1.0"))
		return { service: "sqs", action: (headers["x-amz-target"] || "").replace(/^AmazonSQS\./, "") };
	if (ct.startsWith("application/x-www-form-urlencoded"))
		return { service: "sns" };
	return null;
}

function answerError(res, service, status, code, message) {
	if (service === "sqs") {
		const type = code === "SignatureDoesNotMatch" ? "com.amazon.coral.service#InvalidSignatureException"
			: code === "InvalidClientTokenId" ? "com.amazon.coral.service#UnrecognizedClientException"
			: `com.amazonaws.sqs#${code}`;
		res.writeHead(status, {
			"content-type": "application/x-amz-json-1.0",
			"x-amzn-query-error": `${code};Sender`,
		});
		res.end(JSON.stringify({ __type: type, message }));
	} else {
		const esc = message.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
		res.writeHead(status, { "content-type": "text/xml" });
		res.end(`<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">\n  <Error>\n    <Type>Sender</Type>\n    <Code>${code}</Code>\n    <Message>${esc}</Message>\n  </Error>\n  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>\n</ErrorResponse>\n`);
	}
}

function forward(req, body, res, rewrite) {
	const up = http.request({
		host: "127.0.0.1", port: emuPort, method: req.method, path: req.url,
		headers: { ...req.headers, "content-length": Buffer.byteLength(body) },
	}, (r) => {
		const chunks = [];
		r.on("data", (c) => chunks.push(c));
		r.on("end", () => {
			let out = Buffer.concat(chunks);
			if (rewrite) out = Buffer.from(rewrite(out.toString("utf8")));
			const h = { ...r.headers, "content-length": out.length };
			res.writeHead(r.statusCode, h);
			res.end(out);
		});
	});
	up.on("error", (e) => { res.writeHead(502); res.end(String(e)); });
	up.end(body);
}

async function inject(service, action, params) {
	const auth = `AWS4-HMAC-SHA256 Credential=standin/20200101/${region}/${service}/aws4_request, SignedHeaders=host, Signature=0`;
	if (service === "sqs")
		return app.inject({
			method: "POST", url: "/", payload: JSON.stringify(params),
			headers: { "content-type": "application/x-amz-json-1.0", "x-amz-target": `AmazonSQS.${action}`, authorization: auth, host: `127.0.0.1:${server.address().port}` },
		});
	const form = new URLSearchParams({ Action: action, Version: "2010-03-31", ...params });
	return app.inject({
		method: "POST", url: "/", payload: form.toString(),
		headers: { "content-type": "application/x-www-form-urlencoded", authorization: auth },
	});
}

async function control(req, body, res) {
	const path = req.url.slice("/_standin/".length);
	let r;
	if (req.method === "GET" && path.startsWith("queue/")) {
		r = await app.inject({ method: "GET", url: `/_fauxqs/queues/${path.slice(6)}` });
	} else if (path === "fault") {
		const f = JSON.parse(body || "{}");
		for (let i = faults.length - 1; i >= 0; i--)
			if (faults[i].action === f.action) faults.splice(i, 1);
		faults.push(f);
		res.writeHead(200); res.end("{}"); return;
	} else if (/^(sqs|sns)\/\w+$/.test(path)) {
		const [service, action] = path.split("/");
		r = await inject(service, action, JSON.parse(body || "{}"));
	} else {
		res.writeHead(404); res.end(); return;
	}
	res.writeHead(r.statusCode, { "content-type": r.headers["content-type"] || "text/plain" });
	res.end(r.body);
}

const server = http.createServer((req, res) => {
	const chunks = [];
	req.on("data", (c) => chunks.push(c));
	req.on("end", () => {
		const body = Buffer.concat(chunks).toString("utf8");
		if (req.url.startsWith("/_standin/")) {
			control(req, body, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
			return;
		}
		const p = protocol(req.headers);
		const service = p ? p.service : "-";
		let action = p && p.action;
		if (service === "sns") action = new URLSearchParams(body).get("Action") || "-";
		const v = p ? verify({ method: req.method, target: req.url, rawHeaders: req.rawHeaders, body },
			keys(), { region, service, now: Date.now(), requiredHeaders: ["content-type"] })
			: { ok: false, status: 400, code: "InvalidAction", message: "neither the SQS JSON nor the SNS Query protocol" };
		if (v.ok && (req.method !== "POST" || req.url !== "/"))
			Object.assign(v, { ok: false, status: 400, code: "InvalidAction", message: "only POST / is expected" });
		if (!v.ok) {
			appendFileSync(`${dir}/rejected.log`, `${v.code} ${service} ${action} ${v.message}\n`);
			answerError(res, service, v.status, v.code, v.message);
			return;
		}
		appendFileSync(`${dir}/accepted.log`, `${v.keyId} ${service} ${action}\n`);
		const f = faults.find((x) => x.action === action && x.count > 0);
		if (f) {
			f.count--;
			if (f.entry && service === "sqs") {
				// The first entry fails (not the sender's fault); the rest go through.
				const params = JSON.parse(body);
				const first = params.Entries.shift();
				const failed = { Id: first.Id, SenderFault: false, Code: f.entry, Message: "injected by the stand-in" };
				if (params.Entries.length === 0) {
					res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
					res.end(JSON.stringify({ Successful: [], Failed: [failed] }));
					return;
				}
				forward(req, JSON.stringify(params), res, (out) => {
					const o = JSON.parse(out);
					o.Failed = [...(o.Failed || []), failed];
					return JSON.stringify(o);
				});
				return;
			}
			if (f.status >= 500) {
				res.writeHead(f.status, { "content-type": "text/plain" });
				res.end("injected by the stand-in");
				return;
			}
			answerError(res, service, f.status, f.code, "injected by the stand-in");
			return;
		}
		forward(req, body, res);
	});
});
server.keepAliveTimeout = 30000;
server.listen(0, "127.0.0.1", () => {
	writeFileSync(`${dir}/port.tmp`, `${server.address().port}\n`);
	renameSync(`${dir}/port.tmp`, `${dir}/port`);
});
