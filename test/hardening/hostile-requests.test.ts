// Hostile requests, property-based: random header maps and Authorization
// values (empty, huge, unicode, control characters, several schemes, several
// tokens, whitespace variants, comma-joined), sent both as Envoy's merged
// `headers` and as raw `header_map` bytes (invalid UTF-8 included), with random
// or missing attributes and context_extensions. The authorization server says
// active for ONE token only. Invariants:
//   - an allow only when the Authorization header carried exactly that token as
//     a single well-formed Bearer credential, and the route's policy holds;
//   - every answer is an OK RPC with a well-formed CheckResponse, in time;
//   - the endpoint never sees a token longer than maxTokenLength (or outside b64token);
//   - no token ever appears in a deny.
// Many cases run through the pure pipeline (authRequestOf -> decide ->
// checkResponseOf), fewer through gRPC against one running service.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { startApp } from '../../src/app.js';
import { buildConfig, type Config } from '../../src/config/load.js';
import { decide, type DecideContext } from '../../src/decide.js';
import { authRequestOf, checkResponseOf, type CheckRequest, type CheckResponse } from '../support/wire.js';
import type { Answer, Endpoint } from '../../src/introspection/introspector.js';
import { createLogger } from '../../src/observability/logger.js';
import { compilePolicies, routeTable } from '../../src/policy/compile.js';
import { connectEnvoy, type UpstreamCheckResponse } from '../support/envoy.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { assertProperty } from '../support/property.js';
import { testSender } from '../support/policy.js';

const KNOWN = 'hardening-KNOWN.token_~+/Zz9==';
const MAX_TOKEN = 64;
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const GRPC_DEADLINE_MS = 2000;
const PURE_RUNS = 3000;
const GRPC_RUNS = 300;

/** `default` holds for KNOWN's claims; `strict` (context_extensions, or any path under /admin) never does. */
function config(url: string): Config {
  return buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, maxTokenLength: MAX_TOKEN },
      log: { level: 'silent' },
      endpoints: [{ name: 'idp', url, authMethod: 'none', authenticationTimeout: 1000 }],
      policies: [
        { name: 'default', endpoint: 'idp', scopes: 'read', exposeHeaders: true, attributesHeader: 'x-auth-attributes' },
        { name: 'strict', endpoint: 'idp', scopes: 'admin', match: [{ pathPrefix: '/admin' }] },
      ],
      defaultPolicy: 'default',
    },
    'hostile-requests.yaml',
    { env: {} },
  );
}

const KNOWN_CLAIMS = { sub: 'alice', client_id: 'app', scope: 'read write' };

// ---------------------------------------------------------------- generators

const b64token = fc.stringMatching(/^[A-Za-z0-9\-._~+/]{1,80}={0,2}$/);
const anyText = fc.string({ unit: 'binary', maxLength: 40 });
const controlChar = fc.constantFrom('\0', '\r', '\n', '\r\n', '\x7f', '\x1b', '\v', '\f', '\u0085', '\u2028');

const tokenPart = fc.oneof(
  { weight: 5, arbitrary: fc.constant(KNOWN) },
  fc.constant(''),
  fc.constant(KNOWN.toUpperCase()),
  fc.constant(KNOWN.slice(0, -1)),
  fc.constant(`${KNOWN}=`),
  fc.constant(`x${KNOWN}`),
  fc.constant(encodeURIComponent(KNOWN)),
  fc.constant(`"${KNOWN}"`),
  fc.tuple(fc.constant(KNOWN), controlChar).map(([a, b]) => a + b),
  fc.tuple(controlChar, fc.constant(KNOWN)).map(([a, b]) => a + b),
  fc.tuple(fc.constant(KNOWN), anyText).map(([a, b]) => a + b),
  b64token,
  fc.integer({ min: MAX_TOKEN + 1, max: 20_000 }).map((n) => 'A'.repeat(n)),
  fc.integer({ min: MAX_TOKEN - 2, max: MAX_TOKEN + 2 }).map((n) => 'b'.repeat(n)),
  anyText,
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);
const scheme = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR', 'Basic', 'Token', 'DPoP', 'MAC', 'Bearer:', 'Bearerx', 'Bear', '', 'Bearer,', 'ＢＥＡＲＥＲ');
const separator = fc.constantFrom('', ' ', '  ', '\t', ' \t ', '\n', '\r\n', '\u00a0', '\u3000', '\v', '\0', ',', '=');
const edge = fc.constantFrom('', ' ', '\t', '  \t', '\u00a0', '\r\n', '\0', ',', ';');
const credential = fc
  .tuple(edge, scheme, separator, tokenPart, edge)
  .map(([lead, s, sep, token, trail]) => `${lead}${s}${sep}${token}${trail}`);
const authorizationValue = fc.oneof(
  { weight: 6, arbitrary: credential },
  fc.array(credential, { minLength: 2, maxLength: 3 }).chain((parts) => fc.constantFrom(',', ', ', ' ', ' , ').map((j) => parts.join(j))),
  fc.constant(''),
  anyText,
  fc.integer({ min: 9000, max: 70_000 }).map((n) => `Bearer ${'x'.repeat(n)}`),
);
/** Close to the one valid shape, so that a good share of cases reach the endpoint with KNOWN. */
const nearlyValid = fc
  .tuple(fc.constantFrom('', ' ', '\t'), fc.constantFrom('Bearer', 'bearer', 'BEARER'), fc.constantFrom(' ', '\t', '  ', '\u00a0'), fc.constantFrom(KNOWN, KNOWN, `${KNOWN},`, `${KNOWN} x`, KNOWN.toLowerCase()), fc.constantFrom('', ' ', '\t', '\r'))
  .map((parts) => parts.join(''));
const authorizationKey = fc.constantFrom('authorization', 'Authorization', 'AUTHORIZATION', 'aUtHoRiZaTiOn', 'authorization ', 'proxy-authorization', 'x-authorization', 'authorisation');

const headerName = fc.oneof(
  fc.constantFrom('x-auth-subject', 'x_auth_subject', 'x-auth-attributes', 'cookie', 'host', ':authority', ':path', 'x-request-id', 'x-forwarded-for', 'content-type', ''),
  fc.stringMatching(/^[a-z0-9-]{1,20}$/),
  anyText,
);
const headerValue = fc.oneof(anyText, fc.constant(KNOWN), fc.constant(`Bearer ${KNOWN}`), fc.string({ maxLength: 200 }));

/** Bytes of a header_map value: the text's UTF-8, or random bytes (invalid UTF-8 included). */
const rawBytes = (text: fc.Arbitrary<string>) =>
  fc.oneof({ weight: 4, arbitrary: text.map((s) => Buffer.from(s, 'utf8')) }, fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), text.map((s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0xff, 0xc3])])));

const paths = {
  /** Paths the pathPrefix rule /admin does not take in: the default policy applies. */
  open: ['/', '/orders/42', '/orders?next=/admin', '/Admin', '/orders/%20x', '/x/admin'],
  /** Paths /admin takes in (characters, as Envoy's prefix), or not in normal form where it would judge: never allowed. */
  closed: ['/admin', '/admin/', '/admin/users?x=1', '/administrator', '/admin.json', '/admin-x', '/admin%20', '/admin~', '/admin:x', '//admin', '/./admin', '/public/../admin', '/public/..;/admin', '/%61dmin', '/x%2F..%2Fadmin', '/admin#frag', '/\\admin', '/admin%2F', '/ad%6din/x'],
};
// '' (no path at all) is denied 400 as not in normal form: stricter than needed, and Envoy always sends one.
const path = fc.oneof(fc.constantFrom(...paths.open, ...paths.closed, ''), fc.string({ maxLength: 30 }).map((s) => `/${s}`));
const host = fc.oneof(fc.constantFrom('api.example.com', 'API.EXAMPLE.COM.', 'api.example.com:443', '', '[::1]:80', 'evil.example\r\nx: y'), anyText);
const extensions = fc.option(
  fc.oneof(
    fc.constant({}),
    fc.constant({ policy: 'default' }),
    fc.constant({ policy: 'strict' }),
    fc.record({ policy: anyText }),
    fc.dictionary(anyText, anyText, { maxKeys: 3 }),
  ),
  { nil: undefined },
);

interface Case {
  mode: 'headers' | 'header_map';
  authorization: Array<[string, string | Buffer]>;
  others: Array<[string, string | Buffer]>;
  path: string;
  host: string;
  extensions: Record<string, string> | undefined;
  /** Leave out parts of the request: its attributes, its http, or nothing. */
  shape: 'full' | 'no_attributes' | 'no_http' | 'empty';
}

const hostileCase: fc.Arbitrary<Case> = fc
  .record({
    mode: fc.constantFrom('headers' as const, 'header_map' as const),
    authorization: fc.oneof(
      { weight: 3, arbitrary: fc.array(fc.tuple(authorizationKey, authorizationValue), { maxLength: 3 }) },
      { weight: 2, arbitrary: nearlyValid.map((value): Array<[string, string]> => [['authorization', value]]) },
    ),
    raw: fc.array(rawBytes(authorizationValue), { maxLength: 1 }),
    others: fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }),
    path,
    host,
    extensions,
    shape: fc.oneof({ weight: 12, arbitrary: fc.constant('full' as const) }, fc.constantFrom('no_attributes' as const, 'no_http' as const, 'empty' as const)),
  })
  .map(({ mode, authorization, raw, others, ...rest }) => ({
    ...rest,
    mode,
    // Raw (possibly invalid UTF-8) Authorization bytes only where Envoy can send them.
    authorization: mode === 'header_map' ? [...authorization, ...raw.map((bytes): [string, Buffer] => ['authorization', bytes])] : authorization,
    others,
  }));

// ---------------------------------------------------------------- the oracle

function text(value: string | Buffer): string {
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** The Authorization values the service will see, as authRequestOf reads them (the merged map keeps one value per key). */
function authorizationValues(c: Case): string[] {
  if (c.mode === 'headers') {
    const map = headersObject(c);
    return Object.keys(map)
      .filter((k) => k.toLowerCase() === 'authorization')
      .map((k) => map[k]!);
  }
  return [...c.others, ...c.authorization].filter(([k]) => k.toLowerCase() === 'authorization').map(([, v]) => text(v));
}

/** True when the request carries exactly KNOWN as its single, well-formed Bearer credential. */
function carriesKnownToken(c: Case): boolean {
  if (c.shape !== 'full') return false;
  const values = authorizationValues(c);
  if (values.length !== 1) return false;
  // RFC 6750 2.1, with the documented leniency: OWS (space, tab) around the value and after the scheme.
  const parts = /^[ \t]*([^ \t]+)[ \t]+([^ \t]+)[ \t]*$/.exec(values[0]!);
  return parts !== null && parts[1]!.toLowerCase() === 'bearer' && parts[2] === KNOWN;
}

// The documented routing rule (README, "Choosing the policy"), as the oracle
// reads it. Path matching is these three lines and nothing else: ADMIN_PREFIX
// (the only pathPrefix rule in `config`, without a host, so it judges every
// host), underPrefix (how a pathPrefix compares) and inNormalForm (which paths
// a pathPrefix rule refuses to judge). Adjust them, not routeMayAllow, when the
// documented rule changes.
const ADMIN_PREFIX = '/admin';

/** README: `pathPrefix` compares case-sensitively, character by character (Envoy's route `prefix`), on the path before the query string. */
function underPrefix(pathOnly: string, prefix: string): boolean {
  return pathOnly.startsWith(prefix);
}

/**
 * README: not in normal form when the path has `//`, a `.` segment, `..`
 * anywhere, `\`, `;`, `#`, a space, a control or non-ASCII character, a broken `%`
 * escape, or a `%` escape of an unreserved character or of `/ \ % ;` (or of a
 * control or non-ASCII byte); escapes of other characters (`%20`, `%3A`) are
 * fine. A path is "/" followed by the rest (Envoy always sends one).
 */
function inNormalForm(pathOnly: string): boolean {
  if (!pathOnly.startsWith('/')) return false;
  if (/\/\/|(^|\/)\.(\/|$)|\.\.|[\\;#]|[\x00-\x20\x7f-\uffff]/.test(pathOnly)) return false;
  for (const [escape] of pathOnly.matchAll(/%.?.?/g)) {
    if (!/^%[0-9a-f]{2}$/i.test(escape)) return false;
    const char = String.fromCharCode(parseInt(escape.slice(1), 16));
    if (/[A-Za-z0-9\-._~/\\%;\x00-\x1f\x7f-\xff]/.test(char)) return false;
  }
  return true;
}

/** Whether the route's policy may allow KNOWN: `default` can, `strict` never does, and a path a prefix may not judge is a 400. */
function routeMayAllow(c: Case): 'yes' | 'no' {
  if (c.extensions && Object.hasOwn(c.extensions, 'policy')) return c.extensions.policy === 'default' ? 'yes' : 'no';
  const pathOnly = c.path.split('?')[0]!;
  if (!inNormalForm(pathOnly)) return 'no';
  return underPrefix(pathOnly, ADMIN_PREFIX) ? 'no' : 'yes';
}

function headersObject(c: Case): Record<string, string> {
  const map: Record<string, string> = {};
  for (const [k, v] of c.others) if (k.toLowerCase() !== 'authorization') map[k] = text(v);
  for (const [k, v] of c.authorization) map[k] = text(v);
  return map;
}

/** The CheckRequest Envoy would send (upstream field names), shaped by `c.shape`. */
function checkRequest(c: Case): Record<string, unknown> {
  if (c.shape === 'empty') return {};
  const attributes: Record<string, unknown> = {};
  if (c.extensions !== undefined) attributes.context_extensions = c.extensions;
  if (c.shape === 'no_attributes') return c.extensions === undefined ? {} : { attributes: { context_extensions: c.extensions } };
  if (c.shape === 'no_http') return { attributes: { ...attributes, request: {} } };
  const http: Record<string, unknown> = { id: '1', method: 'GET', path: c.path, host: c.host, scheme: 'https', protocol: 'HTTP/1.1' };
  if (c.mode === 'headers') {
    http.headers = headersObject(c);
  } else {
    const entries: Array<[string, string | Buffer]> = [[':authority', c.host], [':path', c.path], [':method', 'GET'], ...c.others, ...c.authorization];
    http.header_map = { headers: entries.map(([key, value]) => ({ key, raw_value: Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8') })) };
  }
  attributes.request = { http };
  return { attributes };
}

/** Candidate tokens of the case (long enough not to match our fixed sentences by chance). */
function secretsOf(c: Case): string[] {
  const out = new Set<string>([KNOWN]);
  for (const value of authorizationValues(c)) {
    for (const piece of value.split(/[\s,]+/)) if (piece.length >= 12 && !/^bearer$/i.test(piece)) out.add(piece);
  }
  return [...out];
}

// ---------------------------------------------------------------- invariants

interface Shape {
  code: number;
  ok: boolean;
  denied: { status: number; body: string; headers: Array<[string, string]> } | null;
  allowHeaders: Array<[string, string]>;
}

function checkInvariants(c: Case, r: Shape, where: string): void {
  const label = `${where}: ${JSON.stringify(c).slice(0, 400)}`;
  if (r.code === 0) {
    if (!r.ok || r.denied) throw new Error(`allow without ok_response, or with denied_response (${label})`);
    if (!carriesKnownToken(c) || routeMayAllow(c) === 'no') throw new Error(`allowed a request that must be denied (${label})`);
    for (const [name, value] of r.allowHeaders) {
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(name + value)) throw new Error(`control character in an upstream header (${label})`);
    }
    return;
  }
  if (!r.denied) throw new Error(`deny without denied_response (${label})`);
  if (r.ok) throw new Error(`deny with ok_response (${label})`);
  if (!(r.denied.status >= 400 && r.denied.status <= 599)) throw new Error(`deny with HTTP status ${r.denied.status} (${label})`);
  const body = JSON.parse(r.denied.body) as Record<string, unknown>;
  if (typeof body.error !== 'string' || typeof body.error_description !== 'string') throw new Error(`deny body not {error, error_description} (${label})`);
  const everything = r.denied.body + r.denied.headers.map(([k, v]) => `${k}:${v}`).join('\n');
  for (const secret of secretsOf(c)) if (everything.includes(secret)) throw new Error(`a token appears in the deny (${label})`);
  if (carriesKnownToken(c) && routeMayAllow(c) === 'yes') throw new Error(`denied ${r.denied.status} the one valid request shape (${label})`);
}

function fromOurs(response: CheckResponse): Shape {
  return {
    code: response.status.code,
    ok: response.ok_response !== undefined,
    denied: response.denied_response
      ? { status: response.denied_response.status.code, body: response.denied_response.body, headers: response.denied_response.headers.map((h) => [h.header.key, h.header.value]) }
      : null,
    allowHeaders: response.ok_response?.headers.map((h) => [h.header.key, h.header.value]) ?? [],
  };
}

const STATUS: Record<string, number> = { BadRequest: 400, Unauthorized: 401, Forbidden: 403, InternalServerError: 500 };

function fromUpstream(response: UpstreamCheckResponse): Shape {
  if (!response.status) throw new Error('CheckResponse without status');
  const denied = response.denied_response;
  let status = -1;
  if (denied?.status) status = typeof denied.status.code === 'number' ? denied.status.code : (STATUS[denied.status.code] ?? -1);
  return {
    code: response.status.code,
    ok: response.ok_response !== undefined && response.ok_response !== null,
    denied: denied ? { status, body: denied.body, headers: denied.headers.map((h) => [h.header.key, h.header.value]) } : null,
    allowHeaders: response.ok_response?.headers.map((h) => [h.header.key, h.header.value]) ?? [],
  };
}

// ---------------------------------------------------------------- the tests

/** The pure pipeline against `cases` hostile requests; `pinned` fixes fast-check's seed (a regression case). */
async function purePipeline(t: Test, cases: number, pinned: { seed?: number } = {}): Promise<void> {
  const cfg = config('http://127.0.0.1:9/unused');
  const seen: string[] = [];
  const endpoint: Endpoint = { name: 'idp', introspect: () => Promise.reject(new Error('not used')) };
  const policies = compilePolicies(cfg.policies, new Map([['idp', endpoint]]));
  const context: DecideContext = {
    sender: testSender(),
    policies,
    defaultPolicy: policies.get('default')!,
    policySelector: cfg.policySelector,
    routes: routeTable(cfg.policies),
    maxTokenLength: cfg.server.maxTokenLength,
    async introspect(_endpoint: Endpoint, token: string): Promise<Answer> {
      seen.push(token);
      const result = token === KNOWN
        ? { outcome: 'active' as const, claims: Object.freeze({ active: true, ...KNOWN_CLAIMS }), expiresAt: null }
        : { outcome: 'inactive' as const };
      return { result, cache: 'miss' };
    },
  };
  const started = performance.now();
  let allows = 0;
  await assertProperty(
    fc.asyncProperty(hostileCase, async (c) => {
      const request = authRequestOf(checkRequest(c) as CheckRequest);
      const decision = await decide(request, context, new AbortController().signal);
      const response = checkResponseOf(decision);
      // What goes on the wire must survive protobuf encoding (Struct with null prototypes included).
      checkInvariants(c, fromOurs(response), 'pure');
      if (decision.allow) allows += 1;
    }),
    cases,
    pinned,
  );
  for (const token of seen) {
    if (token.length > MAX_TOKEN || !B64TOKEN.test(token)) t.fail(`introspected a token outside the limits: ${token.slice(0, 80)}`);
  }
  t.ok(allows > 0, 'some cases are allowed (the generator reaches the valid shape)');
  t.comment(`${cases} cases, ${allows} allowed, ${seen.length} introspections, ${(performance.now() - started).toFixed(0)} ms`);
}

t.test('the oracle reads the documented routing rule as the README does', async (t) => {
  const at = (path: string): Case => ({ mode: 'headers', authorization: [], others: [], path, host: 'api.example.com', extensions: undefined, shape: 'full' });
  for (const path of paths.open) t.equal(routeMayAllow(at(path)), 'yes', path);
  for (const path of paths.closed) t.equal(routeMayAllow(at(path)), 'no', path);
  // README: "Escapes of other characters (`%20`, `%3A`) are fine"; the rest of its list is refused.
  for (const path of ['/%20', '/orders/%3A', '/a%2Cb', '/x?y=%2F..%2Fadmin']) t.equal(routeMayAllow(at(path)), 'yes', path);
  for (const path of ['/%2e', '/%7E', '/a%5Cb', '/a%25', '/a%3b', '/a%0A', '/a%C3%A9', '/a%2', '/a%zz', '/a b', '/é', '']) t.equal(routeMayAllow(at(path)), 'no', path);
});

t.test(`pure pipeline: ${PURE_RUNS} hostile requests`, (t) => purePipeline(t, PURE_RUNS));

// CI failed once with this seed: the service allowed /%20 as documented, and the old oracle said every '%' must be denied.
t.test('pure pipeline, regression: seed -328986874 (path /%20)', (t) => purePipeline(t, PURE_RUNS, { seed: -328986874 }));

t.test(`through gRPC: ${GRPC_RUNS} hostile requests against a running service`, async (t) => {
  const received: string[] = [];
  const fake = await startFakeAuthorizationServer((request) => {
    const token = request.body.get('token') ?? '';
    received.push(token);
    return { json: token === KNOWN ? { active: true, ...KNOWN_CLAIMS } : { active: false } };
  });
  t.teardown(() => fake.close());
  const app = await startApp(config(fake.url), createLogger('silent'));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());

  const started = performance.now();
  let allows = 0;
  let slowest = 0;
  await assertProperty(
    fc.asyncProperty(hostileCase, async (c) => {
      const before = performance.now();
      const response = await envoy.checkRaw(checkRequest(c), GRPC_DEADLINE_MS);
      const ms = performance.now() - before;
      slowest = Math.max(slowest, ms);
      if (ms >= GRPC_DEADLINE_MS) throw new Error(`answered after the deadline: ${ms} ms`);
      const shape = fromUpstream(response);
      checkInvariants(c, shape, 'grpc');
      if (shape.code === 0) allows += 1;
    }),
    GRPC_RUNS,
  );
  for (const token of received) {
    if (token.length > MAX_TOKEN || !B64TOKEN.test(token)) t.fail(`the endpoint received a token outside the limits: ${token.slice(0, 80)}`);
  }
  t.ok(allows > 0, 'some cases are allowed');
  t.comment(`${GRPC_RUNS} cases, ${allows} allowed, ${received.length} introspections, slowest ${slowest.toFixed(0)} ms, ${(performance.now() - started).toFixed(0)} ms`);

  await t.test('tokens longer than maxTokenLength: 400 without a call', async (t) => {
    const calls = fake.requests.length;
    await assertProperty(
      fc.asyncProperty(
        fc.integer({ min: MAX_TOKEN + 1, max: 50_000 }),
        fc.constantFrom('headers' as const, 'header_map' as const),
        async (length, mode) => {
          const token = `${KNOWN}${'A'.repeat(Math.max(0, length - KNOWN.length))}`;
          const c: Case = { mode, authorization: [['authorization', `Bearer ${token}`]], others: [], path: '/', host: 'api.example.com', extensions: undefined, shape: 'full' };
          const r = fromUpstream(await envoy.checkRaw(checkRequest(c), GRPC_DEADLINE_MS));
          if (r.denied?.status !== 400) throw new Error(`a ${length}-character token got ${r.denied?.status ?? 'an allow'}`);
          if (r.denied.body.includes(token.slice(0, 40))) throw new Error('the token appears in the deny body');
        },
      ),
      60,
    );
    t.equal(fake.requests.length, calls, 'the endpoint was not called');
  });
});
