// The HTTP authorization listener through a plain HTTP client, playing each
// proxy's side of its contract: Envoy http_service (path_prefix + original
// path), nginx auth_request (X-Original-URL/-Method), forward auth
// (X-Forwarded-*). The same pipeline as the gRPC Check decides.
import t, { type Test } from 'tap';
import { connect } from 'node:net';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { first, plainRequest, type PlainAnswer } from '../support/http-client.js';
import { samples } from '../support/service-process.js';

const GOOD = 'good-token-Q1w2E3r4';
const READER = 'reader-token-A1s2D3';
const INACTIVE = 'revoked-token-Z9x8';
const SLOW = 'slow-token-P0o9I8';
const EXP = Math.floor(Date.now() / 1000) + 3600;

const fake = await startFakeAuthorizationServer(
  answerByToken({ [GOOD]: { sub: 'alice', scope: 'read write', exp: EXP }, [READER]: { sub: 'bob', scope: 'read', exp: EXP }, [INACTIVE]: { active: false } }),
);
t.teardown(() => fake.close());
const tokens = answerByToken({ [GOOD]: { sub: 'alice', scope: 'read write', exp: EXP }, [READER]: { sub: 'bob', scope: 'read', exp: EXP }, [INACTIVE]: { active: false } });
fake.respond((request) => (request.body.get('token') === SLOW ? { blackHole: true } : tokens(request)));

async function startService(t: Test, http: Record<string, unknown> = {}): Promise<App> {
  const config = buildConfig(
    {
      server: {
        grpc: { host: '127.0.0.1', port: 0 },
        ops: { host: '127.0.0.1', port: 0 },
        http: { enabled: true, host: '127.0.0.1', port: 0, ...http },
        shutdownTimeout: 2_000,
      },
      log: { level: 'silent' },
      cache: { validatedTokenTTL: 0 },
      endpoints: [{ name: 'main', url: fake.url, clientId: 'authz', clientSecret: 's3cret', authenticationTimeout: 10_000 }],
      policies: [
        { name: 'open', identityHeader: 'x-user' },
        { name: 'writers', identityHeader: 'x-user', scopes: 'write', hideCredentials: true, realm: 'writers' },
        { name: 'admin', identityHeader: 'x-user', scopes: 'admin', match: [{ pathSeparatedPrefix: '/admin' }] },
        { name: 'rollout', identityHeader: 'x-user', scopes: 'admin', enforcement: 'dryRun' },
      ],
      defaultPolicy: 'open',
    },
    'http test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  return app;
}

const app = await startService(t);
const port = app.http!.port;
const bearer = (token: string): [string, string] => ['authorization', `Bearer ${token}`];
const envoy = (path: string, headers: Array<[string, string]> = [], method = 'GET') =>
  plainRequest(port, { method, path, headers: [['host', 'api.example.com'], ...headers] });

function assertDeny(t: Test, answer: PlainAnswer, status: number, error: string, challenge?: RegExp): void {
  t.equal(answer.status, status, `status ${status}`);
  t.equal(first(answer, 'x-authz-status'), String(status), 'X-Authz-Status carries the status');
  t.equal(first(answer, 'content-type'), 'application/json');
  t.equal(first(answer, 'cache-control'), 'no-store');
  t.equal(JSON.parse(answer.body).error, error);
  if (challenge) t.match(first(answer, 'www-authenticate'), challenge);
  else t.notOk(answer.headers.has('www-authenticate'), 'no challenge');
}

t.test('Envoy http_service: allow sets the identity, lists the spoofed copies to remove', async (t) => {
  const answer = await envoy('/envoy/open/orders/7?x=1', [bearer(GOOD), ['x-user', 'mallory'], ['X-User', 'eve']], 'POST');
  t.equal(answer.status, 200);
  t.same(answer.headers.get('x-user'), ['alice'], 'our value, once');
  t.equal(first(answer, 'x-envoy-auth-headers-to-remove'), undefined, 'a header we set is overwritten upstream (allowed_upstream_headers), never also removed');
  t.equal(answer.body, '');

  const spoofed = await envoy('/envoy/open/orders', [bearer(GOOD), ['x-auth-role', 'admin']]);
  t.equal(spoofed.status, 200);
  t.equal(first(spoofed, 'x-envoy-auth-headers-to-remove'), 'x-auth-role', 'a client copy under our prefix is removed');
});

t.test('Envoy http_service: denies carry status, challenge and body', async (t) => {
  assertDeny(t, await envoy('/envoy/open/orders'), 401, 'missing_token', /^Bearer realm="api"$/);
  assertDeny(t, await envoy('/envoy/open/orders', [bearer(INACTIVE)]), 401, 'invalid_token', /error="invalid_token"/);
  assertDeny(t, await envoy('/envoy/writers/orders', [bearer(READER)]), 403, 'insufficient_scope', /realm="writers", error="insufficient_scope"/);
  assertDeny(t, await envoy('/envoy/open/orders', [['authorization', 'Bearer a b']]), 400, 'invalid_request', /error="invalid_request"/);
});

t.test('hideCredentials: authorization is in x-envoy-auth-headers-to-remove', async (t) => {
  const answer = await envoy('/envoy/writers/orders', [bearer(GOOD)]);
  t.equal(answer.status, 200);
  t.match(first(answer, 'x-envoy-auth-headers-to-remove'), /(^|,)authorization(,|$)/);
});

t.test('the policy comes from the sub-request path, never from a client header', async (t) => {
  // A client asking for the weaker policy through headers any contract reads.
  const weaker: Array<[string, string]> = [
    ['x-original-url', 'http://api.example.com/public'],
    ['x-forwarded-uri', '/public'],
    ['x-policy', 'open'],
    bearer(READER),
  ];
  assertDeny(t, await envoy('/envoy/writers/orders', weaker), 403, 'insufficient_scope', /insufficient_scope/);
  assertDeny(t, await envoy('/envoy/-/admin/users', weaker), 403, 'insufficient_scope', /insufficient_scope/);
  t.equal((await envoy('/envoy/-/public', [bearer(READER)])).status, 200, '"-": the rules pick, here the default');
  assertDeny(t, await envoy('/envoy/nope/orders', [bearer(GOOD)]), 500, 'policy_error');
  assertDeny(t, await envoy('/envoy/-/admin/../public', [bearer(READER)]), 400, 'invalid_request');
});

t.test('nginx auth_request: the original request from X-Original-URL and X-Original-Method', async (t) => {
  const nginx = (headers: Array<[string, string]>) => plainRequest(port, { path: '/nginx/-', headers: [['host', 'authz.internal'], ...headers] });
  const original: Array<[string, string]> = [['x-original-method', 'DELETE']];
  t.equal((await nginx([...original, ['x-original-url', 'https://api.example.com/public?q=1'], bearer(READER)])).status, 200);
  assertDeny(t, await nginx([...original, ['x-original-url', 'https://api.example.com/admin/x'], bearer(READER)]), 403, 'insufficient_scope', /./);
  // A client's copy beside the proxy's: two values, and which one is the proxy's cannot be told.
  const twice = await nginx([...original, ['x-original-url', 'https://api.example.com/public'], ['x-original-url', 'https://api.example.com/admin'], bearer(GOOD)]);
  assertDeny(t, twice, 500, 'policy_error');
  assertDeny(t, await nginx([bearer(GOOD)]), 500, 'policy_error');
  assertDeny(t, await nginx([...original, ['x-original-url', '/no/scheme'], bearer(GOOD)]), 500, 'policy_error');
});

t.test('forward auth (Caddy, Traefik): the original request from X-Forwarded-*', async (t) => {
  const forward = (uri: string, token: string, extra: Array<[string, string]> = []) =>
    plainRequest(port, {
      path: '/forward/-?ignored=1',
      headers: [['host', 'authz.internal'], ['x-forwarded-method', 'GET'], ['x-forwarded-proto', 'https'], ['x-forwarded-host', 'api.example.com'], ['x-forwarded-uri', uri], bearer(token), ...extra],
    });
  t.equal((await forward('/public', READER)).status, 200);
  assertDeny(t, await forward('/admin/x', READER), 403, 'insufficient_scope', /./);
  assertDeny(t, await forward('/public', READER, [['x-forwarded-uri', '/admin']]), 500, 'policy_error');
  t.equal((await plainRequest(port, { path: '/forward/open', headers: [['host', 'authz.internal'], bearer(GOOD)] })).status, 500, 'X-Forwarded-* missing');
});

t.test('paths outside the contracts are a 500 deny; /healthz answers', async (t) => {
  for (const path of ['/', '/check', '/envoy', '/envoy/', '/other/open/x', '/envoy/open%zz/x', '/envoy/openx']) {
    const answer = await envoy(path, [bearer(GOOD)]);
    t.equal(answer.status, 500, `${path}: 500`);
  }
  const health = await plainRequest(port, { path: '/healthz' });
  t.equal(health.status, 200);
});

t.test('an endpoint that does not answer: the unreachable deny by decisionTimeout, never a hang', async (t) => {
  const quick = await startService(t, { decisionTimeout: 300 });
  const started = Date.now();
  const answer = await plainRequest(quick.http!.port, { path: '/envoy/open/x', headers: [['host', 'a.example'], bearer(SLOW)], timeoutMs: 8000 });
  t.equal(answer.status, 401, 'unreachableStatus (default 401)');
  t.equal(JSON.parse(answer.body).error, 'introspection_error');
  t.ok(Date.now() - started < 5000, 'answered long before the 10 s authenticationTimeout');
});

t.test('a body is not read: answered, and the connection is not reused', async (t) => {
  const answer = await plainRequest(port, { method: 'POST', path: '/envoy/open/x', headers: [['host', 'a.example'], bearer(GOOD)], body: 'x'.repeat(100_000) });
  t.equal(answer.status, 200);
  t.equal(first(answer, 'connection'), 'close');
});

t.test('a request head over maxHeaderBytes is refused (431)', async (t) => {
  const small = await startService(t, { maxHeaderBytes: 8192 });
  const answer = await plainRequest(small.http!.port, { path: '/envoy/open/x', headers: [['host', 'a.example'], ['x-big', 'y'.repeat(10_000)], bearer(GOOD)] });
  t.equal(answer.status, 431);
});

t.test('no header is dropped unseen: a client copy after 2,000 other lines is still listed for removal', async (t) => {
  const many: Array<[string, string]> = Array.from({ length: 2100 }, (_, i) => [`x-filler-${i}`, 'y']);
  const answer = await envoy('/envoy/open/x', [bearer(GOOD), ...many, ['x-auth-role', 'admin']]);
  t.equal(answer.status, 200);
  t.equal(first(answer, 'x-envoy-auth-headers-to-remove'), 'x-auth-role');
});

t.test('maxConnections: one connection past the cap is closed at once', async (t) => {
  const capped = await startService(t, { maxConnections: 1 });
  const held = connect(capped.http!.port, '127.0.0.1');
  t.teardown(() => held.destroy());
  await new Promise<void>((resolve) => held.once('connect', () => resolve()));
  const refused = await plainRequest(capped.http!.port, { path: '/healthz' }).then(
    () => 'answered',
    () => 'closed',
  );
  t.equal(refused, 'closed');
});

t.test('decisions are counted with transport="http"', async (t) => {
  await envoy('/envoy/open/x', [bearer(GOOD)]);
  const m = samples(await (await fetch(`http://127.0.0.1:${app.ops.port}/metrics`)).text());
  t.ok((m.get('authz_check_decisions_total{decision="allow",reason="ok",policy="open",transport="http"}') ?? 0) >= 1);
  t.equal(m.get('authz_check_decisions_total{decision="allow",reason="ok",policy="open",transport="grpc"}'), undefined, 'none counted as grpc');
});

t.test('enforcement: dryRun: a would-be deny is answered as an anonymous allow, and counted as would_deny', async (t) => {
  const answer = await envoy('/envoy/rollout/x', [bearer(READER), ['x-user', 'mallory']]);
  t.equal(answer.status, 200);
  t.equal(first(answer, 'x-user'), undefined, 'no identity from a token the policy refuses');
  t.equal(first(answer, 'x-auth-status'), 'anonymous');
  t.same(first(answer, 'x-envoy-auth-headers-to-remove')?.split(',').map((name) => name.trim()).sort(), ['authorization', 'x-user']);
  const revoked = await envoy('/envoy/rollout/x', [bearer(INACTIVE)]);
  t.equal(revoked.status, 200, 'a revoked token too');
  t.equal(first(revoked, 'x-user'), undefined);
  const m = samples(await (await fetch(`http://127.0.0.1:${app.ops.port}/metrics`)).text());
  for (const reason of ['insufficient_scope', 'inactive']) {
    t.equal(m.get(`authz_check_decisions_total{decision="would_deny",reason="${reason}",policy="rollout",transport="http"}`), 1, reason);
  }
});

t.test('shutdown drains: the sub-request under way is answered, then the port is closed; /healthz says draining', async (t) => {
  const draining = await startService(t, { decisionTimeout: 1500 });
  const dport = draining.http!.port;
  const pending = plainRequest(dport, { path: '/envoy/open/x', headers: [['host', 'a.example'], bearer(SLOW)], timeoutMs: 8000 });
  await fake.waitForRequests(fake.requests.length + 1, 5000).catch(() => {});
  const stopped = draining.stop();
  const answer = await pending;
  t.equal(answer.status, 401, 'answered with the deny, not cut');
  await stopped;
  const after = await plainRequest(dport, { path: '/healthz', timeoutMs: 2000 }).then(
    () => 'answered',
    () => 'refused',
  );
  t.equal(after, 'refused');
});
