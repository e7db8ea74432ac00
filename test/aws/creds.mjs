// creds: a container credentials endpoint and an IMDSv2 instance metadata service, on 127.0.0.1 only, for the tests.
//
//   node test/aws/creds.mjs DIR
//
// Hands out, at each fetch, the next line of DIR/issue ("KEYID SECRET
// TOKEN"; the last line again once all are used), expiring DIR/ttl
// seconds later (3600 if absent).  GET /container answers if the
// Authorization header equals DIR/auth (when it exists).  IMDSv2: PUT
// /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds gives a
// token, without which the GETs below answer 401.  Each fetch is noted
// in DIR/fetch.log; the port goes to DIR/creds-port.
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import { randomBytes } from "node:crypto";

const dir = process.argv[2];
setTimeout(() => process.exit(0), 3 * 3600 * 1000).unref();
const tokens = new Set();
let issued = 0;

function next() {
	const lines = readFileSync(`${dir}/issue`, "utf8").trim().split("\n");
	const [id, secret, token] = lines[Math.min(issued++, lines.length - 1)].split(/\s+/);
	const ttl = existsSync(`${dir}/ttl`) ? Number(readFileSync(`${dir}/ttl`, "utf8")) : 3600;
	return { AccessKeyId: id, SecretAccessKey: secret, Token: token,
		Expiration: new Date(Date.now() + ttl * 1000).toISOString().replace(/\.\d+Z$/, "Z") };
}

const server = http.createServer((req, res) => {
	const send = (status, body) => { res.writeHead(status); res.end(body); };
	if (req.url === "/container" && req.method === "GET") {
		const want = existsSync(`${dir}/auth`) ? readFileSync(`${dir}/auth`, "utf8").trim() : undefined;
		if (want !== undefined && req.headers.authorization !== want) {
			appendFileSync(`${dir}/fetch.log`, "container refused\n");
			return send(403, '{"message":"bad token"}');
		}
		const c = next();
		appendFileSync(`${dir}/fetch.log`, `container ${c.AccessKeyId}\n`);
		return send(200, JSON.stringify(c));
	}
	if (req.url === "/latest/api/token") {
		if (req.method !== "PUT" || !req.headers["x-aws-ec2-metadata-token-ttl-seconds"])
			return send(400, "");
		const t = randomBytes(16).toString("hex");
		tokens.add(t);
		appendFileSync(`${dir}/fetch.log`, "imds token\n");
		return send(200, t);
	}
	if (req.url.startsWith("/latest/meta-data/iam/security-credentials/")) {
		if (req.method !== "GET" || !tokens.has(req.headers["x-aws-ec2-metadata-token"]))
			return send(401, "");
		const role = req.url.slice("/latest/meta-data/iam/security-credentials/".length);
		if (role === "") return send(200, "cqrs-role\n");
		if (role !== "cqrs-role") return send(404, "");
		const c = next();
		appendFileSync(`${dir}/fetch.log`, `imds ${c.AccessKeyId}\n`);
		return send(200, JSON.stringify({ Code: "Success", LastUpdated: new Date().toISOString(), Type: "AWS-HMAC", ...c }));
	}
	send(404, "");
});
server.listen(0, "127.0.0.1", () => {
	writeFileSync(`${dir}/creds-port.tmp`, `${server.address().port}\n`);
	renameSync(`${dir}/creds-port.tmp`, `${dir}/creds-port`);
});
