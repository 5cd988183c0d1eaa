// End to end with the real Caddy (forward_auth): client -> Caddy -> service
// (HTTP mode) -> fake authorization server, and Caddy -> an echo upstream
// that reports the headers it received. Caddy runs deploy/caddy/Caddyfile as
// shipped, only its addresses changed, behind a global block of the test's
// own (admin off, auto_https off) and with HOME and XDG folders of its own.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { first, plainRequest } from '../support/http-client.js';
import { TOKENS, startHttpModeService } from '../support/http-mode.js';
import { CADDY, freePort, prefixFolder, spawnProxy, startEcho, substitute } from '../support/proxies.js';
import { ROOT } from '../support/service-process.js';

if (CADDY === null) {
  t.plan(0, 'caddy is not installed: apt-get install -y caddy (or set CADDY to its path)');
  process.exit(0);
}

const FILE = 'deploy/caddy/Caddyfile';

const service = await startHttpModeService(t);
const echo = await startEcho(t);
const port = await freePort();
const prefix = prefixFolder(t, 'caddy');
let site = readFileSync(join(ROOT, 'deploy', 'caddy', 'Caddyfile'), 'utf8');
site = substitute(FILE, site, 'forward_auth 127.0.0.1:9002 {', `forward_auth 127.0.0.1:${service.httpPort} {`, 2);
site = substitute(FILE, site, 'reverse_proxy 127.0.0.1:8080', `reverse_proxy 127.0.0.1:${echo.port}`, 2);
site = substitute(FILE, site, 'shop.example.com {', `http://:${port} {\n\tbind 127.0.0.1`);
writeFileSync(join(prefix, 'Caddyfile'), `{\n\tadmin off\n\tauto_https off\n}\n\n${site}`);
const home = { HOME: prefix, XDG_DATA_HOME: join(prefix, 'data'), XDG_CONFIG_HOME: join(prefix, 'config') };
await spawnProxy(t, CADDY, ['run', '--config', join(prefix, 'Caddyfile'), '--adapter', 'caddyfile'], {
  port,
  prefix,
  env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...home },
});

const get = (path: string, headers: Array<[string, string]> = []) => plainRequest(port, { path, headers: [['host', 'shop.example.com'], ...headers] });
const bearer = (token: string): [string, string] => ['authorization', `Bearer ${token}`];
const upstreamCalls = () => echo.received.length;

t.test('authorization server down: the policy\'s unreachableStatus reaches the client as sent', async (t) => {
  await service.fake.setAvailability('refuse');
  t.teardown(() => service.fake.setAvailability('up'));
  const before = upstreamCalls();
  const open = await get('/orders', [bearer('never-seen-token-1234')]);
  t.equal(open.status, 401, 'default policy: 401');
  t.match(first(open, 'www-authenticate'), /^Bearer realm="api"$/);
  const admin = await get('/admin/users', [bearer('never-seen-token-5678')]);
  t.equal(admin.status, 503, 'admin policy: unreachableStatus 503');
  t.equal(JSON.parse(admin.body).error, 'introspection_error', 'our body');
  t.equal(upstreamCalls(), before, 'the upstream was never reached');
});

t.test('no token: 401 and WWW-Authenticate reach the client', async (t) => {
  const answer = await get('/orders');
  t.equal(answer.status, 401);
  t.same(answer.headers.get('www-authenticate'), ['Bearer realm="api"']);
  t.equal(JSON.parse(answer.body).error, 'missing_token');
});

t.test('a valid token: the upstream sees our identity, not the spoofed copies, not the hidden credential', async (t) => {
  const answer = await get('/orders?id=7', [bearer(TOKENS.reader), ['x-auth-subject', 'mallory'], ['X-Auth-Subject', 'eve'], ['x-auth-role', 'admin']]);
  t.equal(answer.status, 200);
  const seen = JSON.parse(answer.body);
  t.equal(seen.url, '/orders?id=7');
  t.equal(seen.headers['x-auth-subject'], 'reader-user', 'one value, ours');
  t.notOk('x-auth-role' in seen.headers, 'a spoofed header under the prefix is dropped');
  t.notOk('authorization' in seen.headers, 'hideCredentials, mirrored by header_up -Authorization');
});

t.test('a policy without hideCredentials passes the credential; its scope is enforced', async (t) => {
  const answer = await get('/admin/users', [bearer(TOKENS.admin), ['x-auth-subject', 'mallory']]);
  t.equal(answer.status, 200);
  const seen = JSON.parse(answer.body);
  t.equal(seen.headers['x-auth-subject'], 'admin-user');
  t.equal(seen.headers.authorization, `Bearer ${TOKENS.admin}`);
});

t.test('insufficient scope: 403 with the insufficient_scope challenge', async (t) => {
  const before = upstreamCalls();
  const answer = await get('/admin/users', [bearer(TOKENS.reader)]);
  t.equal(answer.status, 403);
  t.match(first(answer, 'www-authenticate'), /^Bearer realm="admin", error="insufficient_scope"/);
  t.equal(JSON.parse(answer.body).error, 'insufficient_scope');
  t.equal(upstreamCalls(), before);
});

t.test('an inactive token: 401 invalid_token', async (t) => {
  const answer = await get('/orders', [bearer(TOKENS.inactive)]);
  t.equal(answer.status, 401);
  t.match(first(answer, 'www-authenticate'), /error="invalid_token"/);
});

t.test('a revoked token works from the cache until DELETE /cache, then is refused', async (t) => {
  t.equal((await get('/orders', [bearer(TOKENS.revocable)])).status, 200);
  service.revoke(TOKENS.revocable);
  t.equal((await get('/orders', [bearer(TOKENS.revocable)])).status, 200, 'cached: the revocation window');
  t.equal(await service.evict(TOKENS.revocable), 200);
  t.equal((await get('/orders', [bearer(TOKENS.revocable)])).status, 401);
});

t.test('a client cannot pick a weaker policy', async (t) => {
  const before = upstreamCalls();
  const spoofed = await get('/admin/users', [
    bearer(TOKENS.reader),
    ['x-forwarded-uri', '/orders'],
    ['x-forwarded-method', 'GET'],
    ['x-forwarded-host', 'other.example.com'],
    ['x-original-url', 'http://shop.example.com/orders'],
  ]);
  t.equal(spoofed.status, 403, 'Caddy overwrites X-Forwarded-*; the policy is the route\'s');
  const query = await get('/admin/users?policy=default', [bearer(TOKENS.reader)]);
  t.equal(query.status, 403, 'the original query Caddy appends to the sub-request path changes nothing');
  t.equal(upstreamCalls(), before);
});

// Last: it stops the service.
t.test('the service itself down: the proxy answers its own error, the upstream is not reached', async (t) => {
  await service.app.stop();
  const before = upstreamCalls();
  const answer = await get('/orders', [bearer(TOKENS.reader)]);
  t.equal(answer.status, 502);
  t.equal(upstreamCalls(), before);
});
