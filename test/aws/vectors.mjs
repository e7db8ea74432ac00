// vectors: prove the verifier (sigv4.mjs) on AWS's published SigV4 test vectors.
//
//   node test/aws/vectors.mjs test/vectors/sigv4.json
//
// Each vector must verify with the suite's secret, and must fail once its
// secret, body, a signed header, the scope's region or the signature is
// changed.  Prints one line per check; exits 1 if any check failed.
import { readFileSync } from "node:fs";
import { verify, parseAuthorization, signature } from "./sigv4.mjs";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0, passed = 0;
const check = (name, cond, detail) => {
	if (cond) passed++;
	else { failed++; console.log(`not ok ${name}${detail ? ": " + detail : ""}`); }
};
const now = Date.UTC(2015, 7, 30, 12, 36, 0);

for (const v of doc.vectors) {
	const raw = [];
	for (const [n, val] of v.headers) raw.push(n, val);
	raw.push("Authorization", v.authorization);
	const req = { method: v.method, target: v.target, rawHeaders: raw, body: v.body };
	const keys = new Map([[doc.credentials.access_key_id,
		{ secret: doc.credentials.secret_access_key, token: v.token }]]);
	const opts = { region: doc.region, service: doc.service, now };
	const auth = parseAuthorization(v.authorization);
	const got = signature(req, auth, doc.credentials.secret_access_key, doc.x_amz_date).sig;
	check(`${v.name}: signature`, got === auth.signature, `computed ${got}`);
	const r = verify(req, keys, opts);
	check(`${v.name}: accepted`, r.ok, r.message);

	const bad = (what, mutate, code) => {
		const rq = { ...req, rawHeaders: [...raw] };
		const k = new Map([...keys].map(([a, b]) => [a, { ...b }]));
		const o = { ...opts };
		mutate(rq, k, o);
		const res = verify(rq, k, o);
		check(`${v.name}: ${what} rejected`, !res.ok && (!code || res.code === code),
			res.ok ? "accepted" : res.code);
	};
	bad("another secret", (rq, k) => { k.get("AKIDEXAMPLE").secret += "x"; }, "SignatureDoesNotMatch");
	bad("a changed body", (rq) => { rq.body = (rq.body || "") + " "; }, "SignatureDoesNotMatch");
	bad("a changed signed header", (rq) => {
		const i = rq.rawHeaders.findIndex((h, j) => j % 2 === 0 && h.toLowerCase() === "host");
		rq.rawHeaders[i + 1] = "example2.amazonaws.com";
	}, "SignatureDoesNotMatch");
	bad("another region expected", (rq, k, o) => { o.region = "eu-west-1"; }, "SignatureDoesNotMatch");
	bad("an unknown key", (rq, k) => { k.clear(); }, "InvalidClientTokenId");
	bad("a stale clock", (rq, k, o) => { o.now = now + 16 * 60 * 1000; }, "SignatureDoesNotMatch");
	bad("a flipped signature", (rq) => {
		const i = rq.rawHeaders.indexOf("Authorization");
		const s = rq.rawHeaders[i + 1];
		rq.rawHeaders[i + 1] = s.slice(0, -1) + (s.endsWith("0") ? "1" : "0");
	}, "SignatureDoesNotMatch");
	if (v.method === "GET" && v.target.includes("?"))
		bad("a changed query", (rq) => { rq.target += "&x=1"; }, "SignatureDoesNotMatch");
}
console.log(`${doc.vectors.length} vectors: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
