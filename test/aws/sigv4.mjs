// sigv4: recompute an AWS Signature Version 4 from the specification, to check requests as AWS would.
//
// Written from AWS's description of SigV4 (canonical request, string to
// sign, signing key) with Node's crypto only: it shares no code with
// libcurl, whose signatures it checks.  Proven on AWS's published test
// vectors (test/vectors/sigv4.json, run by test/aws/vectors.mjs).

import { createHash, createHmac, timingSafeEqual } from "node:crypto";

const sha256 = (data) => createHash("sha256").update(data).digest("hex");
const hmac = (key, data) => createHmac("sha256", key).update(data).digest();

// RFC 3986 percent-encoding of everything but the unreserved characters.
export function uriEncode(s) {
	let out = "";
	for (const b of Buffer.from(s, "utf8")) {
		const c = String.fromCharCode(b);
		if (/[A-Za-z0-9\-._~]/.test(c)) out += c;
		else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
	}
	return out;
}

// Percent-decoding that leaves "+" alone and tolerates stray "%".
function uriDecode(s) {
	const bytes = [];
	for (let i = 0; i < s.length; i++) {
		if (s[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
			bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
			i += 2;
		} else {
			bytes.push(...Buffer.from(s[i], "utf8"));
		}
	}
	return Buffer.from(bytes).toString("utf8");
}

// The path, its dot segments removed (RFC 3986 5.2.4), each segment encoded once.
function canonicalUri(path) {
	const segs = path.split("/");
	const out = [];
	for (const s of segs.slice(1)) {
		if (s === ".") continue;
		if (s === "..") { out.pop(); continue; }
		out.push(s);
	}
	if (segs.length > 1 && (segs[segs.length - 1] === "." || segs[segs.length - 1] === ".."))
		out.push("");
	return "/" + out.map((s) => uriEncode(uriDecode(s))).join("/");
}

function canonicalQuery(query) {
	if (query === "") return "";
	const pairs = query.split("&").filter((p) => p !== "").map((p) => {
		const i = p.indexOf("=");
		const k = i < 0 ? p : p.slice(0, i);
		const v = i < 0 ? "" : p.slice(i + 1);
		return [uriEncode(uriDecode(k)), uriEncode(uriDecode(v))];
	});
	pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
	return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

const trimAll = (v) => v.trim().replace(/\s+/g, " ");

// Parse "AWS4-HMAC-SHA256 Credential=K/D/R/S/aws4_request, SignedHeaders=a;b, Signature=hex".
export function parseAuthorization(h) {
	const m = /^AWS4-HMAC-SHA256 (.*)$/.exec(h || "");
	if (!m) return null;
	const f = {};
	for (const part of m[1].split(",")) {
		const i = part.indexOf("=");
		if (i < 0) return null;
		f[part.slice(0, i).trim()] = part.slice(i + 1).trim();
	}
	if (!f.Credential || !f.SignedHeaders || !f.Signature) return null;
	const c = f.Credential.split("/");
	if (c.length !== 5 || c[4] !== "aws4_request") return null;
	return {
		keyId: c[0], date: c[1], region: c[2], service: c[3],
		signedHeaders: f.SignedHeaders.split(";"), signature: f.Signature,
	};
}

// req: { method, target ("/path?query"), rawHeaders [name, value, ...], body (Buffer or string) }
export function canonicalRequest(req, signedHeaders) {
	const q = req.target.indexOf("?");
	const path = q < 0 ? req.target : req.target.slice(0, q);
	const query = q < 0 ? "" : req.target.slice(q + 1);
	const values = new Map();
	for (let i = 0; i < req.rawHeaders.length; i += 2) {
		const name = req.rawHeaders[i].toLowerCase();
		if (!values.has(name)) values.set(name, []);
		values.get(name).push(trimAll(req.rawHeaders[i + 1]));
	}
	const lines = signedHeaders.map((h) => `${h}:${(values.get(h) || []).join(",")}\n`).join("");
	return [
		req.method, canonicalUri(path), canonicalQuery(query), lines,
		signedHeaders.join(";"), sha256(req.body || ""),
	].join("\n");
}

export function signingKey(secret, date, region, service) {
	return hmac(hmac(hmac(hmac("AWS4" + secret, date), region), service), "aws4_request");
}

export function signature(req, auth, secret, amzDate) {
	const creq = canonicalRequest(req, auth.signedHeaders);
	const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
	const sts = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(creq)].join("\n");
	return { creq, sts, sig: hmac(signingKey(secret, auth.date, auth.region, auth.service), sts).toString("hex") };
}

function header(req, name) {
	const v = [];
	for (let i = 0; i < req.rawHeaders.length; i += 2)
		if (req.rawHeaders[i].toLowerCase() === name) v.push(req.rawHeaders[i + 1]);
	return v.length ? v.join(",") : undefined;
}

// The date of "20150830T123600Z" in milliseconds, or NaN.
function amzTime(s) {
	const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || "");
	return m ? Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
}

/*
 * Check a request as AWS does.  keys: Map keyId -> { secret, token }.
 * opts: { region, service, now (ms, or null to skip the clock check),
 * requiredHeaders }.  Returns { ok: true, keyId } or { ok: false, status,
 * code, message }.
 */
export function verify(req, keys, opts) {
	const fail = (status, code, message) => ({ ok: false, status, code, message });
	const authz = header(req, "authorization");
	if (authz === undefined)
		return fail(403, "MissingAuthenticationToken", "Request is missing Authentication Token");
	const auth = parseAuthorization(authz);
	if (!auth)
		return fail(400, "IncompleteSignature", "Authorization header is malformed");
	const key = keys.get(auth.keyId);
	if (!key)
		return fail(403, "InvalidClientTokenId", "The security token included in the request is invalid.");
	const amzDate = header(req, "x-amz-date");
	const t = amzTime(amzDate);
	if (Number.isNaN(t))
		return fail(400, "IncompleteSignature", "X-Amz-Date is missing or malformed");
	if (auth.date !== amzDate.slice(0, 8))
		return fail(403, "SignatureDoesNotMatch", `Credential should be scoped to a valid date: ${auth.date} is not the date of X-Amz-Date`);
	if (opts.now != null && Math.abs(opts.now - t) > 15 * 60 * 1000)
		return fail(403, "SignatureDoesNotMatch", "Signature expired: X-Amz-Date is more than 15 minutes from the server's time");
	if (opts.region && auth.region !== opts.region)
		return fail(403, "SignatureDoesNotMatch", `Credential should be scoped to a valid region, not '${auth.region}'`);
	if (opts.service && auth.service !== opts.service)
		return fail(403, "SignatureDoesNotMatch", `Credential should be scoped to correct service: '${opts.service}', not '${auth.service}'`);
	const signed = new Set(auth.signedHeaders);
	const sorted = [...auth.signedHeaders].sort();
	if (auth.signedHeaders.join(";") !== sorted.join(";") || signed.size !== sorted.length)
		return fail(403, "SignatureDoesNotMatch", "SignedHeaders must be sorted and distinct");
	const required = ["host", "x-amz-date", ...(opts.requiredHeaders || [])];
	for (let i = 0; i < req.rawHeaders.length; i += 2) {
		const n = req.rawHeaders[i].toLowerCase();
		if (n.startsWith("x-amz-") && !required.includes(n)) required.push(n);
	}
	for (const h of required)
		if (!signed.has(h))
			return fail(403, "SignatureDoesNotMatch", `Header ${h} must be signed`);
	for (const h of signed)
		if (header(req, h) === undefined)
			return fail(403, "SignatureDoesNotMatch", `Signed header ${h} is not in the request`);
	const token = header(req, "x-amz-security-token");
	if ((key.token || token !== undefined) && token !== key.token)
		return fail(403, "InvalidClientTokenId", "The security token included in the request is invalid.");
	const { sig } = signature(req, auth, key.secret, amzDate);
	const a = Buffer.from(sig), b = Buffer.from(auth.signature);
	if (a.length !== b.length || !timingSafeEqual(a, b))
		return fail(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.");
	return { ok: true, keyId: auth.keyId };
}
