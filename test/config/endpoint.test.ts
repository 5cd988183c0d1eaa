// The endpoint options of issue 3 and the admin section, as the loader reads
// them: defaults, what each accepts, and errors that name the key, never the
// value. (TLS and proxy options: test/introspection/transport.test.ts.)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildConfig, ConfigError, type Config } from '../../src/config/load.js';

const SECRET = 'S3cr3t-value-xyz';
const URL_AS = 'https://as.example.com/oauth2/introspect';

function build(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Config {
  return buildConfig(raw, 'test.yaml', { env });
}

function endpointOf(options: Record<string, unknown>) {
  return build({ endpoints: [{ name: 'as', url: URL_AS, ...options }] }).endpoints[0]!;
}

function errorOf(options: Record<string, unknown>, top: Record<string, unknown> = {}): string {
  try {
    build({ endpoints: [{ name: 'as', url: URL_AS, clientId: 'authz', clientSecret: SECRET, ...options }], ...top });
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

t.test('defaults of the new endpoint options', async (t) => {
  const ep = endpointOf({ clientId: 'authz', clientSecret: SECRET });
  t.equal(ep.method, 'POST');
  t.equal(ep.tokenParameter, 'token');
  t.same(ep.headers, {});
  t.equal(ep.clientIdHeader, null);
  t.same(ep.tls, { ca: null, cert: null, key: null });
  t.equal(ep.proxy, null);
  t.equal(ep.issuer, null);
  t.same(ep.audience, []);
  t.equal(ep.multiValuedScope, false);
  t.equal(ep.retries, 1);
  t.same(ep.circuitBreaker, { failures: 5, resetTimeout: 10_000 });
  t.equal(ep.maxInFlight, 256);
  t.equal(ep.queueTimeout, 100);
  const config = build({ endpoints: [{ name: 'as', url: URL_AS, authMethod: 'none' }] });
  t.same(config.admin, { token: null }, 'no admin route unless configured');
});

t.test('options given are kept', async (t) => {
  const ep = endpointOf({
    authMethod: 'none',
    method: 'GET',
    tokenParameter: 'access_token',
    headers: { 'X-Tenant': 'acme', 'x-api-key': 'k3y' },
    issuer: 'https://as.example.com',
    audience: 'orders',
    multiValuedScope: true,
    retries: 0,
    circuitBreaker: { failures: 0 },
    maxInFlight: 10,
    queueTimeout: 0,
  });
  t.equal(ep.method, 'GET');
  t.equal(ep.tokenParameter, 'access_token');
  t.same(Object.keys(ep.headers), ['x-tenant', 'x-api-key'], 'names lower-cased');
  t.equal(ep.headers['x-tenant']?.reveal(), 'acme');
  t.equal(JSON.stringify(ep.headers), '{"x-tenant":"[redacted]","x-api-key":"[redacted]"}', 'values print as secrets');
  t.equal(ep.issuer, 'https://as.example.com');
  t.same(ep.audience, ['orders'], 'a single audience becomes a list');
  t.equal(ep.multiValuedScope, true);
  t.equal(ep.retries, 0);
  t.same(ep.circuitBreaker, { failures: 0, resetTimeout: 10_000 }, 'nested keys default one by one');
  t.equal(ep.maxInFlight, 10);
  t.equal(ep.queueTimeout, 0);
  t.same(endpointOf({ authMethod: 'none', audience: ['a', 'b'] }).audience, ['a', 'b']);
});

t.test('client authentication: bearer, inferred and named', async (t) => {
  t.equal(endpointOf({ clientSecret: SECRET }).authMethod, 'client_secret_bearer', 'a secret without a client id is a bearer secret (IBM)');
  t.equal(endpointOf({ authMethod: 'bearer', clientSecret: SECRET }).authMethod, 'client_secret_bearer', '"bearer" is an alias');
  const fromEnv = build({ endpoints: [{ name: 'as', url: URL_AS, authMethod: 'client_secret_bearer', clientSecretEnv: 'S' }] }, { S: SECRET });
  t.equal(fromEnv.endpoints[0]!.clientSecret?.reveal(), SECRET, 'from the environment, like every secret');
  t.equal(endpointOf({ clientId: 'a', clientSecret: SECRET }).authMethod, 'client_secret_basic', 'with a client id: basic, as before');
  t.equal(endpointOf({ clientIdHeader: 'x-client-id', clientSecret: SECRET }).authMethod, 'client_secret_basic', 'with clientIdHeader too');
  t.equal(endpointOf({ clientIdHeader: 'x-client-id', authMethod: 'none' }).clientIdHeader, 'x-client-id');

  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['bearer without a secret', { authMethod: 'bearer', clientSecret: null, clientId: null }, 'endpoints[0].clientSecret: required by authMethod client_secret_bearer (inline, clientSecretFile or clientSecretEnv)'],
    ['bearer with a client id', { authMethod: 'bearer' }, 'endpoints[0].clientId: not used by authMethod client_secret_bearer (the secret alone is sent)'],
    ['bearer secret with a line break', { authMethod: 'bearer', clientId: null, clientSecret: 'a\r\nb' }, 'endpoints[0].clientSecret: must not contain control characters to be sent as a bearer token'],
    ['an unknown method', { authMethod: 'private_key_jwt' }, 'endpoints[0].authMethod: must be one of client_secret_basic, client_secret_post, client_secret_bearer, authorization_value, none'],
    ['clientId and clientIdHeader', { clientIdHeader: 'x-client-id' }, 'endpoints[0].clientIdHeader: give clientId or clientIdHeader, not both'],
    ['clientIdHeader with bearer', { clientId: null, authMethod: 'bearer', clientIdHeader: 'x-client-id' }, 'endpoints[0].clientIdHeader: not used by authMethod client_secret_bearer'],
    ['clientIdHeader with authorization_value', { clientId: null, clientSecret: null, authorizationValue: 'Basic x', clientIdHeader: 'x-c' }, 'endpoints[0].clientIdHeader: not used by authMethod authorization_value'],
    ['clientIdHeader upper-case', { clientId: null, clientIdHeader: 'X-Client-Id' }, 'endpoints[0].clientIdHeader: must be a lower-case header name of letters, digits and "-"'],
    ['clientIdHeader authorization', { clientId: null, clientIdHeader: 'authorization' }, 'endpoints[0].clientIdHeader: authorization carries the token, not a client id'],
    ['client_secret_post with GET', { authMethod: 'client_secret_post', method: 'GET' }, 'endpoints[0].authMethod: client_secret_post sends the secret in a form body: it needs method POST'],
  ];
  for (const [name, options, message] of cases) t.equal(errorOf(options), `test.yaml: ${message}`, name);
  t.notMatch(errorOf({ authMethod: 'bearer', clientId: null, clientSecret: 'a\r\nb' }), /a\r\nb/, 'the secret is never quoted');
});

t.test('method, tokenParameter, headers, audience, limits: what is refused', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['method lower-case', { method: 'get' }, 'endpoints[0].method: must be one of POST, GET'],
    ['method PUT', { method: 'PUT' }, 'endpoints[0].method: must be one of POST, GET'],
    ['tokenParameter with a space', { tokenParameter: 'access token' }, 'endpoints[0].tokenParameter: must be 1-64 letters, digits, ".", "_", "~" or "-"'],
    ['tokenParameter empty', { tokenParameter: '' }, 'endpoints[0].tokenParameter: must be 1-64 letters, digits, ".", "_", "~" or "-"'],
    ['tokenParameter client_secret', { tokenParameter: 'client_secret' }, 'endpoints[0].tokenParameter: client_secret is another parameter'],
    ['headers a list', { headers: ['x-a: b'] }, 'endpoints[0].headers: must be a mapping'],
    ['headers a string', { headers: 'x-a: b' }, 'endpoints[0].headers: must be a mapping'],
    ['a header name with a space', { headers: { 'x a': 'b' } }, 'endpoints[0].headers: "x a" is not a valid header name'],
    ['Authorization', { headers: { Authorization: 'Bearer x' } }, 'endpoints[0].headers: authorization cannot be set here'],
    ['content-type', { headers: { 'content-type': 'text/plain' } }, 'endpoints[0].headers: content-type cannot be set here'],
    ['host', { headers: { host: 'evil' } }, 'endpoints[0].headers: host cannot be set here'],
    ['a number value', { headers: { 'x-n': 1 } }, 'endpoints[0].headers: the value of x-n must be a string'],
    ['a value with CR LF', { headers: { 'x-a': 'b\r\nx-evil: 1' } }, 'endpoints[0].headers: the value of x-a must be at most 8192 characters without control characters'],
    ['a value too long', { headers: { 'x-a': 'b'.repeat(8193) } }, 'endpoints[0].headers: the value of x-a must be at most 8192 characters without control characters'],
    ['one header twice', { headers: { 'X-A': '1', 'x-a': '2' } }, 'endpoints[0].headers: x-a is given twice'],
    ['audience empty list', { audience: [] }, 'endpoints[0].audience: must be a string or a non-empty list of strings'],
    ['audience of numbers', { audience: [1] }, 'endpoints[0].audience: must be a string or a non-empty list of strings'],
    ['audience a number', { audience: 5 }, 'endpoints[0].audience: must be a string'],
    ['issuer a list', { issuer: ['a'] }, 'endpoints[0].issuer: must be a string'],
    ['retries 6', { retries: 6 }, 'endpoints[0].retries: must be a whole number from 0 to 5'],
    ['retries "1"', { retries: '1' }, 'endpoints[0].retries: must be a number'],
    ['failures negative', { circuitBreaker: { failures: -1 } }, 'endpoints[0].circuitBreaker.failures: must be a whole number from 0 to 10000'],
    ['resetTimeout too short', { circuitBreaker: { resetTimeout: 10 } }, 'endpoints[0].circuitBreaker.resetTimeout: must be a whole number from 100 to 600000'],
    ['circuitBreaker a number', { circuitBreaker: 5 }, 'endpoints[0].circuitBreaker: must be a mapping'],
    ['an unknown circuitBreaker key', { circuitBreaker: { threshold: 3 } }, 'endpoints[0].circuitBreaker.threshold: unknown option'],
    ['maxInFlight 0', { maxInFlight: 0 }, 'endpoints[0].maxInFlight: must be a whole number from 1 to 100000'],
    ['multiValuedScope "yes"', { multiValuedScope: 'yes' }, 'endpoints[0].multiValuedScope: must be a boolean (true or false)'],
    ['rejectUnauthorized', { rejectUnauthorized: false }, 'endpoints[0].rejectUnauthorized: unknown option'],
  ];
  for (const [name, options, message] of cases) t.equal(errorOf(options), `test.yaml: ${message}`, name);
  t.notMatch(errorOf({ headers: { 'x-a': 'S3cr3t\n' } }), /S3cr3t/, 'a header value is never quoted');
});

t.test('cache.negativeTTL and cache.maxNegativeEntries', async (t) => {
  const config = build({ cache: { negativeTTL: 0, maxNegativeEntries: 50 }, endpoints: [{ name: 'as', url: URL_AS, authMethod: 'none' }] });
  t.same(config.cache, { maxCacheEntries: 1000, validatedTokenTTL: 600, negativeTTL: 0, maxNegativeEntries: 50 });
  t.equal(errorOf({}, { cache: { negativeTTL: 3601 } }), 'test.yaml: cache.negativeTTL: must be a whole number from 0 to 3600');
  t.equal(errorOf({}, { cache: { maxNegativeEntries: -1 } }), 'test.yaml: cache.maxNegativeEntries: must be a whole number from 0 to 10000000');
});

t.test('admin token: inline, file or environment; long enough; never printed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'admin-token');
  writeFileSync(file, '  admin-token-0123456789\n');
  const endpoints = [{ name: 'as', url: URL_AS, authMethod: 'none' }];
  t.equal(build({ admin: { token: 'admin-token-0123456789' }, endpoints }).admin.token?.reveal(), 'admin-token-0123456789');
  t.equal(build({ admin: { tokenFile: file }, endpoints }).admin.token?.reveal(), 'admin-token-0123456789', 'trimmed');
  t.equal(build({ admin: { tokenEnv: 'ADMIN' }, endpoints }, { ADMIN: 'from-env-0123456789' }).admin.token?.reveal(), 'from-env-0123456789');
  t.equal(JSON.stringify(build({ admin: { token: 'admin-token-0123456789' }, endpoints }).admin), '{"token":"[redacted]"}');

  const cases: Array<[Record<string, unknown>, string]> = [
    [{ token: 'short' }, 'admin.token: must be at least 16 printable characters without spaces'],
    [{ token: 'has a space in it, long' }, 'admin.token: must be at least 16 printable characters without spaces'],
    [{ token: 'admin-token-0123456789', tokenFile: file }, 'admin.token: give it inline, as a file or as an environment variable, not several'],
    [{ tokenFile: join(dir, 'missing') }, `admin.tokenFile: cannot read ${join(dir, 'missing')}: ENOENT`],
    [{ tokenEnv: 'NOPE' }, 'admin.tokenEnv: environment variable NOPE is not set'],
    [{ token: '' }, 'admin.token: is empty'],
    [{ secret: 'x' }, 'admin.secret: unknown option'],
  ];
  for (const [admin, message] of cases) t.equal(errorOf({}, { admin }), `test.yaml: ${message}`, message);
  t.notMatch(errorOf({}, { admin: { token: 'short' } }), /short/, 'the token is never quoted');
});

t.test('an http url is refused unless on loopback or allowInsecure; allowed ones are warned about', async (t) => {
  const load = (options: Record<string, unknown>) => {
    const warnings: string[] = [];
    const endpoint = { name: 'as', clientId: 'authz', clientSecret: SECRET, issuer: 'https://as.example.com', ...options };
    const config = buildConfig({ endpoints: [endpoint] }, 'test.yaml', { env: {}, warn: (message) => warnings.push(message) });
    return { config, warnings };
  };
  for (const url of ['http://as.example.com/introspect', 'http://10.0.0.7:8080/introspect', 'http://[2001:db8::1]/introspect', 'http://127.0.0.1.nip.io/x']) {
    t.match(
      errorOf({ url }),
      /^test\.yaml: endpoints\[0\]\.url: http sends the client secret and every token in clear: use https, or set allowInsecure: true/,
      url,
    );
    t.notMatch(errorOf({ url }), SECRET);
  }
  t.match(
    errorOf({ url: 'http://127.0.0.1:8080/introspect', proxy: 'http://proxy.example.com:3128' }),
    /endpoints\[0\]\.url: http sends the client secret/,
    'through a remote proxy, the first hop leaves the host',
  );
  t.same(load({ url: 'http://127.0.0.1:8080/introspect', proxy: 'http://127.0.0.1:3128' }).warnings, [], 'a loopback proxy to a loopback endpoint');
  for (const url of ['http://127.0.0.1:8080/introspect', 'http://127.1.2.3/x', 'http://localhost:9/x', 'http://[::1]:9/x', 'https://as.example.com/x']) {
    t.same(load({ url }).warnings, [], `${url}: accepted without a warning`);
  }
  const allowed = load({ url: 'http://as.example.com/introspect', allowInsecure: true });
  t.equal(allowed.config.endpoints[0]!.url, 'http://as.example.com/introspect');
  t.same(allowed.warnings.length, 1);
  t.match(allowed.warnings[0], /^test\.yaml: endpoints\[0\]\.url: http \(allowed by allowInsecure\): the client secret and every token cross the network in clear/);
  t.match(errorOf({ allowInsecure: true }), /^test\.yaml: endpoints\[0\]\.allowInsecure: has no effect with an https url$/);
  t.match(errorOf({ allowInsecure: 'yes' }), /endpoints\[0\]\.allowInsecure: must be a boolean/);
});

t.test('an endpoint with neither issuer nor audience is warned about', async (t) => {
  const warningsOf = (options: Record<string, unknown>) => {
    const warnings: string[] = [];
    buildConfig({ endpoints: [{ name: 'as', url: URL_AS, authMethod: 'none', ...options }] }, 'test.yaml', { env: {}, warn: (m) => warnings.push(m) });
    return warnings;
  };
  t.same(warningsOf({}), ['test.yaml: endpoints[0]: neither issuer nor audience is set: a token this endpoint calls active is accepted whoever it was issued to or by']);
  t.same(warningsOf({ issuer: 'https://as.example.com' }), []);
  t.same(warningsOf({ audience: 'orders-api' }), []);
  t.same(warningsOf({ audience: ['a', 'b'] }), []);
});
