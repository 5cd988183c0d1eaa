// End to end with the real nginx (auth_request): client -> nginx -> service
// (HTTP mode) -> fake authorization server, and nginx -> an echo upstream
// that reports the headers it received. nginx runs deploy/nginx/ as shipped,
// only its ports changed, inside a main config giving it a prefix of its own.
import t from 'tap';
import { first, plainRequest } from '../support/http-client.js';
import { TOKENS, startHttpModeService } from '../support/http-mode.js';
import { NGINX, freePort, prefixFolder, spawnProxy, startEcho, writeNginxConfig } from '../support/proxies.js';
import { ROOT } from '../support/service-process.js';

if (NGINX === null) {
  t.plan(0, 'nginx is not installed: apt-get install -y nginx (or set NGINX to its path)');
  process.exit(0);
}

const service = await startHttpModeService(t);
const echo = await startEcho(t);
const port = await freePort();
const prefix = prefixFolder(t, 'nginx');
const args = writeNginxConfig({ root: ROOT, prefix, port, authzPort: service.httpPort, upstreamPort: echo.port });
await spawnProxy(t, NGINX, args, { port, prefix });

const get = (path: string, headers: Array<[string, string]> = []) => plainRequest(port, { path, headers: [['host', 'shop.example.com'], ...headers] });
const bearer = (token: string): [string, string] => ['authorization', `Bearer ${token}`];
const upstreamCalls = () => echo.received.length;

t.test('authorization server down: the documented statuses, restored from X-Authz-Status', async (t) => {
  await service.fake.setAvailability('refuse');
  t.teardown(() => service.fake.setAvailability('up'));
  const before = upstreamCalls();
  const open = await get('/orders', [bearer('never-seen-token-1234')]);
  t.equal(open.status, 401, 'default policy: unreachableStatus 401, which nginx passes');
  t.match(first(open, 'www-authenticate'), /^Bearer realm="api"$/);
  const admin = await get('/admin/users', [bearer('never-seen-token-5678')]);
  t.equal(admin.status, 503, 'admin policy: unreachableStatus 503, put back by @authz_error');
  t.equal(upstreamCalls(), before, 'the upstream was never reached');
});

t.test('no token: 401 and one WWW-Authenticate reach the client', async (t) => {
  const before = upstreamCalls();
  const answer = await get('/orders');
  t.equal(answer.status, 401);
  t.same(answer.headers.get('www-authenticate'), ['Bearer realm="api"'], 'once');
  t.equal(upstreamCalls(), before);
});

t.test('a valid token: the upstream sees our identity, not the spoofed copies, not the hidden credential', async (t) => {
  const answer = await get('/orders?id=7', [bearer(TOKENS.reader), ['x-auth-subject', 'mallory'], ['X-Auth-Subject', 'eve'], ['x-authz-status', '200']]);
  t.equal(answer.status, 200);
  const seen = JSON.parse(answer.body);
  t.equal(seen.url, '/orders?id=7');
  t.equal(seen.headers['x-auth-subject'], 'reader-user', 'one value, ours');
  t.notOk('authorization' in seen.headers, 'hideCredentials: no authorization upstream');
  t.notOk('x-authz-status' in seen.headers, 'nor a spoofed status header');
});

t.test('a policy without hideCredentials passes the credential; its scope is enforced', async (t) => {
  const answer = await get('/admin/users', [bearer(TOKENS.admin), ['x-auth-subject', 'mallory']]);
  t.equal(answer.status, 200);
  const seen = JSON.parse(answer.body);
  t.equal(seen.headers['x-auth-subject'], 'admin-user');
  t.equal(seen.headers.authorization, `Bearer ${TOKENS.admin}`);
});

t.test('insufficient scope: 403 with the insufficient_scope challenge (put back by @authz_forbidden)', async (t) => {
  const before = upstreamCalls();
  const answer = await get('/admin/users', [bearer(TOKENS.reader)]);
  t.equal(answer.status, 403);
  t.match(first(answer, 'www-authenticate'), /^Bearer realm="admin", error="insufficient_scope"/);
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
  const answer = await get('/orders', [bearer(TOKENS.revocable)]);
  t.equal(answer.status, 401);
  t.match(first(answer, 'www-authenticate'), /error="invalid_token"/);
});

t.test('a client cannot pick a weaker policy', async (t) => {
  const before = upstreamCalls();
  const spoofed = await get('/admin/users', [
    bearer(TOKENS.reader),
    ['x-original-url', 'http://shop.example.com/orders'],
    ['x-original-method', 'GET'],
    ['x-forwarded-uri', '/orders'],
  ]);
  t.equal(spoofed.status, 403, 'original-request headers from the client are overwritten by nginx');
  t.equal((await get('/_authz/default', [bearer(TOKENS.reader)])).status, 404, 'the internal sub-request locations are not the client\'s to call');
  t.equal(upstreamCalls(), before);
  // Percent-encoding and dot segments in the client's path cannot reach /admin/ under another policy either.
  const encoded = await get('/orders/../admin/users', [bearer(TOKENS.reader)]);
  t.equal(encoded.status, 403, 'nginx normalises the path first: /admin/ and its policy');
});

// Last: it stops the service.
t.test('the service itself down: the proxy answers its own error, the upstream is not reached', async (t) => {
  await service.app.stop();
  const before = upstreamCalls();
  const answer = await get('/orders', [bearer(TOKENS.reader)]);
  t.equal(answer.status, 500);
  t.equal(upstreamCalls(), before);
});
