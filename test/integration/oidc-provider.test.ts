/**
 * End to end: Envoy (a gRPC client built from the upstream protos) -> this
 * service -> a real RFC 7662 authorization server (oidc-provider on loopback).
 * Time is moved with an injected clock, never by sleeping.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer, type AuthorizationServer } from '../support/authorization-server.js';
import { connectEnvoy, summarize, type CheckOptions, type EnvoyClient, type UpstreamCheckResponse } from '../support/envoy.js';

/** The type of a tap test context (the argument of a subtest callback). */
type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const INACTIVE_CHALLENGE = 'Bearer realm="api", error="invalid_token", error_description="the token is not active"';
const UNVERIFIED_CHALLENGE = 'Bearer realm="api"';

/** google.rpc.Code values as they arrive in CheckResponse.status. */
const RPC = { OK: 0, PERMISSION_DENIED: 7, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/** A clock the test moves by hand; the service reads it for cache expiry and for exp. */
class TestClock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
  advanceSeconds(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}

interface Harness {
  app: App;
  envoy: EnvoyClient;
  clock: TestClock;
  check(token: string, options?: CheckOptions): Promise<UpstreamCheckResponse>;
}

type Raw = Record<string, unknown>;

function basicEndpoint(as: AuthorizationServer, overrides: Raw = {}): Raw {
  return {
    name: 'oidc',
    url: as.introspectionUrl,
    authMethod: 'client_secret_basic',
    clientId: as.introspectors.basic.clientId,
    clientSecret: as.introspectors.basic.clientSecret,
    ...overrides,
  };
}

async function startHarness(
  t: Test,
  options: { endpoints: Raw[]; policies?: Raw[]; defaultPolicy?: string; validatedTokenTTL?: number },
): Promise<Harness> {
  const raw: Raw = {
    server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1000 },
    log: { level: 'silent' },
    cache: { validatedTokenTTL: options.validatedTokenTTL ?? 60, maxCacheEntries: 1000 },
    endpoints: options.endpoints,
    policies: options.policies ?? [],
  };
  if (options.defaultPolicy) raw.defaultPolicy = options.defaultPolicy;
  // An empty environment: GRPC_PORT or LOG_LEVEL of the shell must not change the test.
  const config = buildConfig(raw, 'test', { env: {} });
  const clock = new TestClock();
  const app = await startApp(config, createLogger('silent'), { clock });
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return {
    app,
    envoy,
    clock,
    check: (token, extra = {}) =>
      envoy.check({ ...extra, headers: { authorization: `Bearer ${token}`, ...extra.headers } }),
  };
}

function header(response: UpstreamCheckResponse, name: string) {
  const list = (response.denied_response ?? response.ok_response)?.headers ?? [];
  return list.filter((h) => h.header.key === name);
}

/** Asserts a full allow for `identity`: OK status, one overwriting identity header, dynamic metadata. */
function assertAllowed(t: Test, response: UpstreamCheckResponse, identity: string): void {
  t.equal(response.status?.code, RPC.OK, 'status OK');
  t.notOk(response.denied_response, 'no denied_response');
  t.ok(response.ok_response, 'has ok_response');
  const set = header(response, 'x-auth-subject');
  t.equal(set.length, 1, 'exactly one x-auth-subject header');
  t.equal(set[0]?.header.value, identity, 'x-auth-subject value');
  t.same(set[0]?.append, { value: false }, 'append: false');
  t.equal(set[0]?.append_action, 'OVERWRITE_IF_EXISTS_OR_ADD', 'append_action');
  t.equal(response.dynamic_metadata?.fields.identity?.stringValue, identity, 'dynamic metadata identity');
}

function body(response: UpstreamCheckResponse): Record<string, unknown> {
  return JSON.parse(response.denied_response?.body ?? 'null') as Record<string, unknown>;
}

const as = await startAuthorizationServer();
t.teardown(() => as.close());

t.test('valid token, client_secret_basic introspector', async (t) => {
  const h = await startHarness(t, { endpoints: [basicEndpoint(as)] });
  const token = await as.issueToken({ scope: 'read' });
  const before = as.introspectionCount();
  const response = await h.check(token);
  assertAllowed(t, response, 'app-one');
  t.equal(as.introspectionCount(), before + 1, 'asked the endpoint once');
});

t.test('valid token, client_secret_post introspector', async (t) => {
  const h = await startHarness(t, {
    endpoints: [
      {
        name: 'oidc',
        url: as.introspectionUrl,
        authMethod: 'client_secret_post',
        clientId: as.introspectors.post.clientId,
        clientSecret: as.introspectors.post.clientSecret,
      },
    ],
  });
  const token = await as.issueToken({ scope: 'read', clientId: 'app-two' });
  const before = as.introspectionCount();
  assertAllowed(t, await h.check(token), 'app-two');
  t.equal(as.introspectionCount(), before + 1);
});

t.test('mappedIdentity templates', async (t) => {
  const token = await as.issueToken({ scope: 'read write' });

  await t.test('{iss}/{client_id}', async (t) => {
    const h = await startHarness(t, {
      endpoints: [basicEndpoint(as)],
      policies: [{ name: 'p', mappedIdentity: '{iss}/{client_id}' }],
    });
    assertAllowed(t, await h.check(token), `${as.issuer}/app-one`);
  });

  await t.test('{sub} alone: oidc-provider gives no sub for client_credentials -> 403 policy_error', async (t) => {
    const h = await startHarness(t, {
      endpoints: [basicEndpoint(as)],
      policies: [{ name: 'p', mappedIdentity: '{sub}' }],
    });
    const response = await h.check(token);
    const r = summarize(response);
    t.equal(r.allowed, false);
    t.equal(r.code, RPC.PERMISSION_DENIED);
    t.equal(r.httpStatus, 403);
    t.equal(response.status?.message, 'policy_error');
    t.same(body(response), { error: 'policy_error', error_description: 'the token does not identify its holder' });
    t.notOk(r.body?.includes('undefined'), 'the body never says undefined');
    t.equal(r.headers['x-auth-subject'], undefined, 'no identity header on a deny');
    t.equal(r.headers['www-authenticate'], undefined, 'no bearer challenge on a policy deny');
    t.notOk(response.ok_response, 'no ok_response');
  });

  await t.test('{iss}/{sub}: a literal part never fills in for a missing claim', async (t) => {
    const h = await startHarness(t, {
      endpoints: [basicEndpoint(as)],
      policies: [{ name: 'p', mappedIdentity: '{iss}/{sub}' }],
    });
    const r = summarize(await h.check(token));
    t.equal(r.allowed, false);
    t.equal(r.httpStatus, 403);
    t.notOk(r.body?.includes('undefined'));
    t.notOk(r.body?.includes(as.issuer), 'no partial identity in the body');
  });
});

t.test('a second Check of the same token is served from the cache', async (t) => {
  const h = await startHarness(t, { endpoints: [basicEndpoint(as)] });
  const token = await as.issueToken({ scope: 'read' });
  const before = as.introspectionCount();
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(as.introspectionCount(), before + 1);
  assertAllowed(t, await h.check(token), 'app-one');
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(as.introspectionCount(), before + 1, 'no further introspection');
  t.equal(h.app.authorizer.cache.size, 1, 'one cache entry');
});

t.test('a revoked token is allowed while cached, then re-introspected and denied after validatedTokenTTL', async (t) => {
  const h = await startHarness(t, { endpoints: [basicEndpoint(as)], validatedTokenTTL: 60 });
  const token = await as.issueToken({ scope: 'read' });
  const before = as.introspectionCount();
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(as.introspectionCount(), before + 1);

  await as.revoke(token);
  h.clock.advanceSeconds(50);
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(as.introspectionCount(), before + 1, 'served from the cache 50 s later, revocation not seen yet');

  h.clock.advanceSeconds(11); // 61 s after the first answer
  const response = await h.check(token);
  const r = summarize(response);
  t.equal(as.introspectionCount(), before + 2, 'asked the endpoint again');
  t.equal(r.allowed, false);
  t.equal(r.code, RPC.UNAUTHENTICATED);
  t.equal(r.httpStatus, 401);
  t.equal(r.headers['www-authenticate'], INACTIVE_CHALLENGE);
  t.equal(r.headers['cache-control'], 'no-store');
  t.same(body(response), { error: 'invalid_token', error_description: 'the token is not active' });
  t.notOk(response.ok_response, 'no ok_response');

  const again = summarize(await h.check(token));
  t.equal(again.httpStatus, 401);
  t.equal(as.introspectionCount(), before + 2, 'the inactive answer is reused for cache.negativeTTL (10 s)');

  h.clock.advanceSeconds(11);
  t.equal(summarize(await h.check(token)).httpStatus, 401);
  t.equal(as.introspectionCount(), before + 3, 'and asked again after it');
});

t.test('the cache never serves a token past its exp, even when validatedTokenTTL is longer', async (t) => {
  const shortLived = await startAuthorizationServer({ accessTokenTtlSeconds: 120 });
  t.teardown(() => shortLived.close());
  const h = await startHarness(t, { endpoints: [basicEndpoint(shortLived)], validatedTokenTTL: 600 });
  const token = await shortLived.issueToken({ scope: 'read' });
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(shortLived.introspectionCount(), 1);

  h.clock.advanceSeconds(115); // exp is 120 s after issue: still valid, still cached
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(shortLived.introspectionCount(), 1, 'cache hit before exp');

  h.clock.advanceSeconds(7); // 122 s: past exp, well before the 600 s TTL
  const response = await h.check(token);
  const r = summarize(response);
  t.equal(shortLived.introspectionCount(), 2, 're-introspected once the token expired');
  // The server's own clock still says active; the service's clock says exp has passed.
  t.equal(r.allowed, false);
  t.equal(r.httpStatus, 401);
  t.equal(r.headers['www-authenticate'], INACTIVE_CHALLENGE);
  t.equal(h.app.authorizer.cache.size, 0, 'nothing cached for an expired token');
});

t.test('an unknown token is 401 invalid_token', async (t) => {
  const h = await startHarness(t, { endpoints: [basicEndpoint(as)] });
  const before = as.introspectionCount();
  const response = await h.check(`unknown-${randomBytes(24).toString('base64url')}`);
  const r = summarize(response);
  t.equal(as.introspectionCount(), before + 1);
  t.equal(r.allowed, false);
  t.equal(r.code, RPC.UNAUTHENTICATED);
  t.equal(r.httpStatus, 401);
  t.equal(r.headers['www-authenticate'], INACTIVE_CHALLENGE);
  t.same(body(response), { error: 'invalid_token', error_description: 'the token is not active' });
});

t.test('two endpoints do not share cache entries', async (t) => {
  const h = await startHarness(t, {
    endpoints: [basicEndpoint(as, { name: 'oidc-a' }), basicEndpoint(as, { name: 'oidc-b' })],
    policies: [
      { name: 'a', endpoint: 'oidc-a' },
      { name: 'b', endpoint: 'oidc-b' },
    ],
    defaultPolicy: 'a',
  });
  const token = await as.issueToken({ scope: 'read' });
  const before = as.introspectionCount();
  assertAllowed(t, await h.check(token), 'app-one');
  t.equal(as.introspectionCount(), before + 1, 'endpoint a asked');
  assertAllowed(t, await h.check(token, { contextExtensions: { policy: 'b' } }), 'app-one');
  t.equal(as.introspectionCount(), before + 2, 'endpoint b asked too: a\'s answer did not serve b');
  assertAllowed(t, await h.check(token, { contextExtensions: { policy: 'a' } }), 'app-one');
  assertAllowed(t, await h.check(token, { contextExtensions: { policy: 'b' } }), 'app-one');
  t.equal(as.introspectionCount(), before + 2, 'each endpoint answers from its own cache entry');
  t.equal(h.app.authorizer.cache.size, 2);
});

t.test('wrong introspection credentials: the bad-response status, never an allow', async (t) => {
  const token = await as.issueToken({ scope: 'read' });

  await t.test('default badResponseStatus 500', async (t) => {
    const h = await startHarness(t, { endpoints: [basicEndpoint(as, { clientSecret: 'not-the-secret' })] });
    const before = as.introspectionCount();
    const response = await h.check(token);
    const r = summarize(response);
    t.equal(as.introspectionCount(), before + 1, 'the endpoint was asked (and answered HTTP 401)');
    t.equal(r.allowed, false);
    t.equal(r.code, RPC.INTERNAL);
    t.equal(r.httpStatus, 500);
    t.equal(response.status?.message, 'bad_response');
    t.same(body(response), { error: 'bad_response', error_description: 'the token could not be verified' });
    t.equal(r.headers['www-authenticate'], undefined, 'a 500 carries no bearer challenge');
    t.notOk(response.ok_response, 'no ok_response');

    const second = summarize(await h.check(token));
    t.equal(second.httpStatus, 500);
    t.equal(as.introspectionCount(), before + 2, 'a bad response is not cached');
  });

  await t.test('badResponseStatus 503', async (t) => {
    const h = await startHarness(t, {
      endpoints: [basicEndpoint(as, { clientSecret: 'not-the-secret' })],
      policies: [{ name: 'p', badResponseStatus: 503 }],
    });
    const response = await h.check(token);
    const r = summarize(response);
    t.equal(r.allowed, false);
    t.equal(r.code, RPC.UNAVAILABLE);
    t.equal(r.httpStatus, 503);
    t.same(body(response), { error: 'bad_response', error_description: 'the token could not be verified' });
  });

  await t.test('client_secret_post with a wrong secret', async (t) => {
    const h = await startHarness(t, {
      endpoints: [
        {
          name: 'oidc',
          url: as.introspectionUrl,
          authMethod: 'client_secret_post',
          clientId: as.introspectors.post.clientId,
          clientSecret: 'not-the-secret',
        },
      ],
    });
    const r = summarize(await h.check(token));
    t.equal(r.allowed, false);
    t.equal(r.httpStatus, 500);
  });
});

t.test('the authorization server is down: unreachableStatus, never an allow', async (t) => {
  const down = await startAuthorizationServer();
  let closed = false;
  t.teardown(() => (closed ? undefined : down.close()));
  const h = await startHarness(t, { endpoints: [basicEndpoint(down)] });
  const h503 = await startHarness(t, {
    endpoints: [basicEndpoint(down)],
    policies: [{ name: 'p', unreachableStatus: 503 }],
  });
  const cached = await down.issueToken({ scope: 'read' });
  const fresh = await down.issueToken({ scope: 'read' });
  // A first call opens a keep-alive connection, which the server's close then cuts.
  assertAllowed(t, await h.check(cached), 'app-one');
  t.equal(down.introspectionCount(), 1);

  await down.close();
  closed = true;

  const response = await h.check(fresh);
  const r = summarize(response);
  t.equal(r.allowed, false, 'connection refused is never an allow');
  t.equal(r.code, RPC.UNAUTHENTICATED);
  t.equal(r.httpStatus, 401);
  t.equal(response.status?.message, 'introspection_error');
  t.equal(r.headers['www-authenticate'], UNVERIFIED_CHALLENGE);
  t.same(body(response), { error: 'introspection_error', error_description: 'the token could not be verified' });

  const r503 = summarize(await h503.check(fresh));
  t.equal(r503.allowed, false);
  t.equal(r503.code, RPC.UNAVAILABLE);
  t.equal(r503.httpStatus, 503);
  t.equal(r503.headers['www-authenticate'], undefined, 'a 503 carries no bearer challenge');

  // Documented: an active answer is reused until validatedTokenTTL, whether or not the server is up.
  assertAllowed(t, await h.check(cached), 'app-one');
  t.equal(down.introspectionCount(), 1);
});

t.test('50 concurrent Checks of a fresh token share one introspection', async (t) => {
  const h = await startHarness(t, { endpoints: [basicEndpoint(as)] });
  const token = await as.issueToken({ scope: 'read' });
  const before = as.introspectionCount();
  const responses = await Promise.all(Array.from({ length: 50 }, () => h.check(token)));
  t.equal(as.introspectionCount(), before + 1, 'exactly one introspection');
  const allowed = responses.filter((r) => r.status?.code === RPC.OK && header(r, 'x-auth-subject')[0]?.header.value === 'app-one');
  t.equal(allowed.length, 50, 'all 50 allowed as app-one');
});
