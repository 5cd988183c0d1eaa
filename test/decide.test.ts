import t, { type Test } from 'tap';
import type { AuthRequest } from '../src/auth-request.js';
import type { PolicyConfig } from '../src/config/load.js';
import { decide, type CompiledPolicy, type DecideContext, type DecisionNote } from '../src/decide.js';
import type { Allow, CacheResult, Decision, Deny } from '../src/decision.js';
import type { Answer, Endpoint } from '../src/introspection/introspector.js';
import type { IntrospectionResult } from '../src/introspection/result.js';
import type { RawPolicy } from '../src/config/schema.js';
import { compilePolicies, compilePolicy, routeTable } from '../src/policy/compile.js';
import { testPolicy, testSender } from './support/policy.js';

const TOKEN = 'tOk3n.Sup3r-Secret_value~xyz';
const OTHER_TOKEN = 'Second.Token-Value_123';

/** Every decision made in this file, checked at the end for the tokens. */
const decisions: Decision[] = [];

function policyConfig(overrides: Partial<RawPolicy> & { template?: string } = {}): PolicyConfig {
  const { template, ...rest } = overrides;
  return testPolicy({ ...(template === undefined ? {} : { mappedIdentity: template }), ...rest });
}

const endpointAs: Endpoint = { name: 'as', introspect: () => Promise.reject(new Error('not used')) };
const endpointOther: Endpoint = { name: 'other-as', introspect: () => Promise.reject(new Error('not used')) };

function compiled(config: PolicyConfig, endpoint = endpointAs): CompiledPolicy {
  return compilePolicy(config, endpoint);
}

interface IntrospectCall {
  endpoint: Endpoint;
  token: string;
  signal: AbortSignal;
}

interface Fake {
  context: DecideContext;
  calls: IntrospectCall[];
}

/** A context whose introspection answers `result` with `cache`. */
function fakeContext(
  options: {
    result?: IntrospectionResult;
    cache?: CacheResult;
    policies?: CompiledPolicy[];
    defaultPolicy?: string;
    policySelector?: string;
    maxTokenLength?: number;
  } = {},
): Fake {
  const calls: IntrospectCall[] = [];
  const policies = options.policies ?? [compiled(policyConfig())];
  const byName = new Map(policies.map((p) => [p.config.name, p]));
  const defaultPolicy = byName.get(options.defaultPolicy ?? policies[0]!.config.name)!;
  const context: DecideContext = {
    sender: testSender(),
    policies: byName,
    defaultPolicy,
    policySelector: options.policySelector ?? 'policy',
    routes: routeTable(policies.map((p) => p.config)),
    maxTokenLength: options.maxTokenLength ?? 256,
    async introspect(endpoint: Endpoint, token: string, signal: AbortSignal): Promise<Answer> {
      calls.push({ endpoint, token, signal });
      return { result: options.result ?? { outcome: 'inactive' }, cache: options.cache ?? 'miss' };
    },
  };
  return { context, calls };
}

function request(headers: Record<string, string | string[]> = {}, extensions: Record<string, string> = {}): AuthRequest {
  return {
    headers: new Map(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])),
    contextExtensions: new Map(Object.entries(extensions)),
    method: 'GET',
    host: 'api.example.com',
    path: '/things',
    requestId: 'req-1',
  };
}

const bearer = (token = TOKEN) => ({ authorization: `Bearer ${token}` });

function active(claims: Record<string, unknown>): IntrospectionResult {
  return { outcome: 'active', claims: Object.freeze({ active: true, ...claims }), expiresAt: null };
}

async function run(req: AuthRequest, fake: Fake, note: DecisionNote = {}, signal = new AbortController().signal) {
  const decision = await decide(req, fake.context, signal, note);
  decisions.push(decision);
  return decision;
}

function asDeny(t: Test, decision: Decision): Deny {
  t.equal(decision.allow, false, 'denied');
  if (decision.allow) throw new Error(`expected a deny, got ${JSON.stringify(decision)}`);
  return decision;
}

function asAllow(t: Test, decision: Decision): Allow {
  t.equal(decision.allow, true, 'allowed');
  if (!decision.allow) throw new Error(`expected an allow, got ${JSON.stringify(decision)}`);
  return decision;
}

t.test('no bearer credentials: 401 missing_token with a bare challenge', async (t) => {
  const cases: Array<[string, Record<string, string | string[]>, Partial<RawPolicy>?]> = [
    ['no Authorization header', {}],
    ['Basic credentials', { authorization: 'Basic dXNlcjpwYXNz' }],
    ['DPoP credentials under senderConstraint: off', { authorization: 'DPoP abc' }, { senderConstraint: 'off' }],
  ];
  for (const [name, headers, raw] of cases) {
    const fake = fakeContext({ result: active({ sub: 'alice' }), policies: [compiled(policyConfig(raw))] });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run(request(headers), fake, note));
    t.same(
      deny,
      {
        allow: false,
        reason: 'missing_token',
        policy: 'default',
        status: 401,
        challenge: 'Bearer realm="api"',
        bearerError: null,
        description: 'a bearer token is required',
        endpoint: null,
        cache: 'none',
      },
      name,
    );
    t.equal(fake.calls.length, 0, `${name}: no introspection`);
    t.equal(note.detail, undefined, `${name}: no detail`);
  }
});

t.test('the DPoP scheme without a proof: 401 invalid_dpop_proof under a DPoP challenge, before introspection', async (t) => {
  const fake = fakeContext({ result: active({ sub: 'alice', cnf: { jkt: 'A'.repeat(43) } }) });
  const deny = asDeny(t, await run(request({ authorization: `DPoP ${TOKEN}` }), fake));
  t.equal(deny.reason, 'invalid_dpop_proof');
  t.equal(deny.status, 401);
  t.equal(deny.bearerError, 'invalid_dpop_proof');
  t.match(deny.challenge, /^DPoP realm="api", algs="ES256 [^"]+", error="invalid_dpop_proof"/);
  t.equal(fake.calls.length, 0, 'no introspection');
});

t.test('the realm comes from the policy', async (t) => {
  const fake = fakeContext({ policies: [compiled(policyConfig({ realm: 'orders api' }))] });
  const deny = asDeny(t, await run(request(), fake));
  t.equal(deny.challenge, 'Bearer realm="orders api"');
});

t.test('malformed bearer credentials: 400 invalid_request', async (t) => {
  const cases: Array<[string, Record<string, string | string[]>, string]> = [
    ['two Authorization lines', { authorization: [`Bearer ${TOKEN}`, `Bearer ${OTHER_TOKEN}`] }, 'more than one Authorization header'],
    ['merged credentials', { authorization: `Basic x,Bearer ${TOKEN}` }, 'more than one credential in the Authorization header'],
    ['empty token', { authorization: 'Bearer   ' }, 'the bearer token is empty'],
    ['bad characters', { authorization: `Bearer ${TOKEN}"` }, 'the bearer token has characters outside RFC 6750 b64token'],
    ['too long', { authorization: `Bearer ${TOKEN}${'a'.repeat(300)}` }, 'the bearer token is longer than 256 characters'],
  ];
  for (const [name, headers, description] of cases) {
    const fake = fakeContext({ result: active({ sub: 'alice' }) });
    const deny = asDeny(t, await run(request(headers), fake));
    t.same(
      deny,
      {
        allow: false,
        reason: 'invalid_request',
        policy: 'default',
        status: 400,
        challenge: `Bearer realm="api", error="invalid_request", error_description="${description}"`,
        bearerError: 'invalid_request',
        description,
        endpoint: null,
        cache: 'none',
      },
      name,
    );
    t.equal(fake.calls.length, 0, `${name}: no introspection`);
  }
});

t.test('maxTokenLength comes from the context', async (t) => {
  const token = 'a'.repeat(40);
  const short = fakeContext({ maxTokenLength: 39, result: active({ sub: 'alice' }) });
  t.equal((await run(request(bearer(token)), short)).allow, false, 'one over');
  const exact = fakeContext({ maxTokenLength: 40, result: active({ sub: 'alice' }) });
  t.equal((await run(request(bearer(token)), exact)).allow, true, 'exactly');
});

t.test('an inactive token: 401 invalid_token', async (t) => {
  const fake = fakeContext({ result: { outcome: 'inactive' }, cache: 'coalesced' });
  const note: DecisionNote = {};
  const deny = asDeny(t, await run(request(bearer()), fake, note));
  t.same(deny, {
    allow: false,
    reason: 'inactive',
    policy: 'default',
    status: 401,
    challenge: 'Bearer realm="api", error="invalid_token", error_description="the token is not active"',
    bearerError: 'invalid_token',
    description: 'the token is not active',
    endpoint: 'as',
    cache: 'coalesced',
  });
  t.equal(fake.calls.length, 1);
  t.equal(fake.calls[0]!.token, TOKEN, 'the token goes to the introspector');
  t.equal(fake.calls[0]!.endpoint, endpointAs, "the policy's endpoint");
});

t.test('the caller signal reaches the introspector', async (t) => {
  const fake = fakeContext({ result: active({ sub: 'alice' }) });
  const controller = new AbortController();
  await run(request(bearer()), fake, {}, controller.signal);
  t.equal(fake.calls[0]!.signal, controller.signal);
});

t.test('unreachable endpoint: unreachableStatus', async (t) => {
  const cases: Array<[string, IntrospectionResult, number, string | null]> = [
    ['error, default 401', { outcome: 'error', detail: 'request failed: ECONNREFUSED' }, 401, 'Bearer realm="api"'],
    ['timeout, default 401', { outcome: 'timeout', detail: 'no answer in time' }, 401, 'Bearer realm="api"'],
    ['error, configured 503', { outcome: 'error', detail: 'request failed: ECONNRESET' }, 503, null],
    ['timeout, configured 503', { outcome: 'timeout', detail: 'no answer before the deadline' }, 503, null],
    ['timeout, configured 500', { outcome: 'timeout', detail: 'slow' }, 500, null],
  ];
  // The token may be fine: never invalid_token, which tells a client to throw it away.
  for (const [name, result, status, challenge] of cases) {
    const fake = fakeContext({ result, policies: [compiled(policyConfig({ unreachableStatus: status }))] });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run(request(bearer()), fake, note));
    t.equal(deny.reason, 'introspection_error', `${name}: reason`);
    t.equal(deny.status, status, `${name}: status`);
    t.equal(deny.bearerError, null, `${name}: no bearer error code`);
    t.equal(deny.challenge, challenge, `${name}: challenge`);
    t.equal(deny.endpoint, 'as', `${name}: endpoint`);
    t.equal(note.detail, result.outcome !== 'active' && 'detail' in result ? result.detail : '', `${name}: detail`);
  }
});

t.test('bad response: badResponseStatus without challenge', async (t) => {
  for (const status of [500, 502]) {
    const fake = fakeContext({
      result: { outcome: 'bad_response', detail: 'the endpoint answered HTTP 404' },
      policies: [compiled(policyConfig({ badResponseStatus: status }))],
    });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run(request(bearer()), fake, note));
    t.same(
      deny,
      {
        allow: false,
        reason: 'bad_response',
        policy: 'default',
        status,
        challenge: null,
        bearerError: null,
        description: 'the token could not be verified',
        endpoint: 'as',
        cache: 'miss',
      },
      `status ${status}`,
    );
    t.equal(note.detail, 'the endpoint answered HTTP 404');
  }
});

t.test('an active token is allowed with the mapped identity', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['sub', { sub: 'alice', username: 'al', client_id: 'app' }, 'alice'],
    ['username when no sub', { username: 'al', client_id: 'app' }, 'al'],
    ['client_id when neither', { client_id: 'app' }, 'app'],
    ['username when sub is empty', { sub: '', username: 'al' }, 'al'],
    ['numeric sub', { sub: 1234 }, '1234'],
  ];
  for (const [name, claims, identity] of cases) {
    const fake = fakeContext({ result: active(claims), cache: 'hit' });
    const note: DecisionNote = {};
    const allow = asAllow(t, await run(request(bearer()), fake, note));
    t.same(
      allow,
      {
        allow: true,
        reason: 'ok',
        policy: 'default',
        identity,
        headers: [{ name: 'x-auth-subject', value: identity }],
        removeHeaders: [],
        metadata: { policy: 'default', status: 'authenticated', identity, attributes: { active: true, ...claims } },
        endpoint: 'as',
        cache: 'hit',
      },
      name,
    );
    t.equal(note.detail, undefined, `${name}: no detail`);
  }
});

t.test('the policy is selected by context_extensions', async (t) => {
  const main = compiled(policyConfig({ name: 'main' }), endpointAs);
  const partner = compiled(
    policyConfig({ name: 'partner', endpoint: 'other-as', identityHeader: 'x-partner', template: 'partner:{client_id}', realm: 'partners' }),
    endpointOther,
  );
  const claims = { sub: 'alice', client_id: 'acme' };

  const viaDefault = fakeContext({ result: active(claims), policies: [main, partner], defaultPolicy: 'main' });
  const d1 = asAllow(t, await run(request(bearer()), viaDefault));
  t.equal(d1.policy, 'main');
  t.same(d1.headers, [{ name: 'x-auth-subject', value: 'alice' }]);
  t.equal(viaDefault.calls[0]!.endpoint, endpointAs);

  const viaRoute = fakeContext({ result: active(claims), policies: [main, partner], defaultPolicy: 'main' });
  const d2 = asAllow(t, await run(request(bearer(), { policy: 'partner' }), viaRoute));
  t.equal(d2.policy, 'partner');
  t.same(d2.headers, [{ name: 'x-partner', value: 'partner:acme' }]);
  t.equal(d2.endpoint, 'other-as');
  t.equal(viaRoute.calls[0]!.endpoint, endpointOther, "the selected policy's endpoint is asked");

  const denied = fakeContext({ policies: [main, partner], defaultPolicy: 'main' });
  t.equal(asDeny(t, await run(request({}, { policy: 'partner' }), denied)).challenge, 'Bearer realm="partners"');

  const selector = fakeContext({ result: active(claims), policies: [main, partner], defaultPolicy: 'main', policySelector: 'authz' });
  t.equal((await run(request(bearer(), { authz: 'partner', policy: 'main' }), selector)).policy, 'partner', 'policySelector names the key');
  const ignored = fakeContext({ result: active(claims), policies: [main, partner], defaultPolicy: 'main', policySelector: 'authz' });
  t.equal((await run(request(bearer(), { policy: 'partner' }), ignored)).policy, 'main', 'other keys are ignored');
});

t.test('a policy named by the proxy configuration (request.policy) wins, and an unknown one is never the default', async (t) => {
  const claims = { sub: 'alice', scope: 'read' };
  const main = compiled(policyConfig({ name: 'main' }));
  const partner = compiled(policyConfig({ name: 'partner', identityHeader: 'x-partner' }), endpointOther);
  const named = fakeContext({ result: active(claims), policies: [main, partner], defaultPolicy: 'main' });
  const byPath = { ...request(bearer(), { policy: 'main' }), policy: 'partner' };
  t.equal((await run(byPath, named)).policy, 'partner', 'over context_extensions');
  t.equal(named.calls[0]!.endpoint, endpointOther);

  const unknown = fakeContext({ result: active(claims), policies: [main, partner], defaultPolicy: 'main' });
  const deny = asDeny(t, await run({ ...request(bearer()), policy: 'nope' }, unknown));
  t.equal(deny.reason, 'policy_error');
  t.equal(deny.status, 500);
  t.equal(unknown.calls.length, 0, 'nobody asked');
});

t.test('an unknown policy name: 500 policy_error, nobody asked', async (t) => {
  for (const headers of [bearer(), {}]) {
    const fake = fakeContext({ result: active({ sub: 'alice' }) });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run(request(headers, { policy: 'nope' }), fake, note));
    t.same(deny, {
      allow: false,
      reason: 'policy_error',
      policy: null,
      status: 500,
      challenge: null,
      bearerError: null,
      description: 'the route is not configured correctly',
      endpoint: null,
      cache: 'none',
    });
    t.equal(fake.calls.length, 0, 'introspect is not called');
    t.match(note.detail, /policy "nope"/, 'the detail names the policy');
  }
  const empty = fakeContext({ result: active({ sub: 'alice' }) });
  t.equal(asDeny(t, await run(request(bearer(), { policy: '' }), empty)).reason, 'policy_error', 'an empty name is no name');
});

t.test('an identity that cannot be a header value: 403 policy_error', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['CR LF in sub', { sub: 'alice\r\nx-admin: true' }, /control characters/],
    ['LF in sub', { sub: 'alice\nx' }, /control characters/],
    ['NUL in sub', { sub: 'alice\u0000' }, /control characters/],
    ['too long', { sub: 'a'.repeat(8193) }, /too long/],
    ['no identity claim', { scope: 'read' }, /sub, username, client_id/],
    ['only unusable claims', { sub: null, username: [], client_id: {} }, /none present/],
  ];
  for (const [name, claims, detail] of cases) {
    const fake = fakeContext({ result: active(claims) });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run(request(bearer()), fake, note));
    t.same(
      deny,
      {
        allow: false,
        reason: 'policy_error',
        policy: 'default',
        status: 403,
        challenge: null,
        bearerError: null,
        description: 'the token does not identify its holder',
        endpoint: 'as',
        cache: 'miss',
      },
      name,
    );
    t.match(note.detail, detail, `${name}: detail`);
  }
  const longest = fakeContext({ result: active({ sub: 'a'.repeat(8192) }) });
  t.equal((await run(request(bearer()), longest)).allow, true, '8192 characters fit');
});

t.test('spoofed identity headers are removed, the one we set is not', async (t) => {
  const fake = fakeContext({ result: active({ sub: 'alice' }) });
  const headers = {
    ...bearer(),
    'x-auth-subject': 'mallory',
    x_auth_subject: 'mallory',
    'x-auth_subject': 'mallory',
    'x-auth-roles': 'admin',
    x_auth_roles: 'admin',
    'x-authx': 'keep',
    'x-request-id': 'req-1',
    host: 'api.example.com',
  };
  const allow = asAllow(t, await run(request(headers), fake));
  t.same(allow.removeHeaders, ['x_auth_subject', 'x-auth_subject', 'x-auth-roles', 'x_auth_roles']);
  t.notOk(allow.removeHeaders.includes('x-auth-subject'), 'the identity header is overwritten, not removed');
  t.same(allow.headers, [{ name: 'x-auth-subject', value: 'alice' }]);
});

t.test('an identity header outside the prefix is protected too', async (t) => {
  const config = policyConfig({ identityHeader: 'x-user' });
  const fake = fakeContext({ result: active({ sub: 'alice' }), policies: [compiled(config)] });
  const allow = asAllow(t, await run(request({ ...bearer(), 'x-user': 'mallory', x_user: 'mallory', 'x-auth-a': '1' }), fake));
  t.same(allow.headers, [{ name: 'x-user', value: 'alice' }]);
  t.same(allow.removeHeaders, ['x_user', 'x-auth-a']);
});

t.test('insufficient_scope: 403 with a challenge naming the required scopes', async (t) => {
  const cases: Array<[string, Partial<RawPolicy>, string]> = [
    ['AND', { scopes: 'read admin' }, 'the token lacks a scope this resource requires'],
    ['OR', { scopes: 'admin  audit', scopeValidationCriteria: 'OR', realm: 'orders' }, 'the token has none of the scopes this resource accepts'],
  ];
  for (const [name, raw, description] of cases) {
    const config = policyConfig(raw);
    const fake = fakeContext({ result: active({ sub: 'alice', scope: 'read write' }), policies: [compiled(config)], cache: 'hit' });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run(request(bearer()), fake, note));
    t.same(
      deny,
      {
        allow: false,
        reason: 'insufficient_scope',
        policy: 'default',
        status: 403,
        challenge: `Bearer realm="${config.realm}", error="insufficient_scope", error_description="${description}", scope="${config.scopes.join(' ')}"`,
        bearerError: 'insufficient_scope',
        description,
        endpoint: 'as',
        cache: 'hit',
      },
      name,
    );
    t.match(note.detail, /scope does not satisfy scopes/, `${name}: detail`);
  }
  const ok = fakeContext({ result: active({ sub: 'alice', scope: ['read', 'admin'] }), policies: [compiled(policyConfig({ scopes: 'read admin' }))] });
  t.equal((await run(request(bearer()), ok)).allow, true, 'an array scope claim is read too');
});

t.test('client_not_allowed: a plain 403, no challenge', async (t) => {
  const config = policyConfig({ skipClientIdValidation: false, allowedClients: ['app-one'], scopes: 'admin' });
  const fake = fakeContext({ result: active({ client_id: 'app-two', scope: 'read' }), policies: [compiled(config)] });
  const note: DecisionNote = {};
  const deny = asDeny(t, await run(request(bearer()), fake, note));
  t.same(deny, {
    allow: false,
    reason: 'client_not_allowed',
    policy: 'default',
    status: 403,
    challenge: null,
    bearerError: null,
    description: 'the client is not allowed to use this resource',
    endpoint: 'as',
    cache: 'miss',
  });
  t.match(note.detail, /client_id is not in allowedClients/);
  const listed = fakeContext({ result: active({ client_id: 'app-one', scope: 'admin' }), policies: [compiled(config)] });
  t.equal((await run(request(bearer()), listed)).allow, true);
});

t.test('an evaluation is reused for the same claims object, per policy', async (t) => {
  const claims = active({ sub: 'alice', scope: 'read' });
  const policy = compiled(policyConfig({ exposeHeaders: true }));
  const fake = fakeContext({ result: claims, policies: [policy], cache: 'hit' });
  const first = asAllow(t, await run(request({ ...bearer(), 'x-auth-scope': 'admin' }), fake));
  const second = asAllow(t, await run(request({ ...bearer(), x_auth_sub: 'bob' }), fake));
  t.equal(second.headers, first.headers, 'the same headers array');
  t.equal(second.metadata, first.metadata, 'the same metadata object');
  t.same(first.removeHeaders, [], 'x-auth-scope is set by us, so overwritten, not removed');
  t.same(second.removeHeaders, ['x_auth_sub'], 'spoofed headers are per request');
  const other = compiled(policyConfig({ exposeHeaders: false }));
  const fake2 = fakeContext({ result: claims, policies: [other] });
  t.same(asAllow(t, await run(request(bearer()), fake2)).headers.length, 1, 'another policy evaluates the same claims its own way');
});

t.test('hideCredentials removes Authorization on allow', async (t) => {
  const fake = fakeContext({ result: active({ sub: 'alice' }), policies: [compiled(policyConfig({ hideCredentials: true }))] });
  const allow = asAllow(t, await run(request({ ...bearer(), 'x-auth-subject': 'mallory', x_auth_subject: 'm' }), fake));
  t.same(allow.removeHeaders, ['x_auth_subject', 'authorization']);
  t.notOk(allow.headers.some((h) => h.name === 'authorization'), 'never set, only removed');
  const plain = fakeContext({ result: active({ sub: 'alice' }) });
  t.notOk(asAllow(t, await run(request(bearer()), plain)).removeHeaders.includes('authorization'), 'kept by default');
  const denied = fakeContext({ result: { outcome: 'inactive' }, policies: [compiled(policyConfig({ hideCredentials: true }))] });
  t.equal((await run(request(bearer()), denied)).allow, false, 'a deny never reaches the upstream anyway');
});

t.test('passThrough: no usable token goes through as anonymous', async (t) => {
  const config = policyConfig({ passThrough: true, hideCredentials: true, mappedIdentity: '{sub}', scopes: 'read' });
  const spoofs = { 'x-auth-subject': 'mallory', 'x-auth-status': 'authenticated', x_auth_status: 'x', 'x-auth-roles': 'admin' };
  const cases: Array<[string, Record<string, string | string[]>, IntrospectionResult, string | null, CacheResult, RegExp]> = [
    ['no token', spoofs, { outcome: 'inactive' }, null, 'none', /anonymous: no bearer token/],
    ['another scheme', { ...spoofs, authorization: 'Basic eDp5' }, { outcome: 'inactive' }, null, 'none', /no bearer token/],
    ['malformed', { ...spoofs, authorization: 'Bearer a"b' }, { outcome: 'inactive' }, null, 'none', /b64token/],
    ['inactive', { ...spoofs, ...bearer() }, { outcome: 'inactive' }, 'as', 'miss', /not active/],
    ['unreachable', { ...spoofs, ...bearer() }, { outcome: 'error', detail: 'ECONNREFUSED' }, 'as', 'miss', /anonymous: ECONNREFUSED/],
    ['timeout', { ...spoofs, ...bearer() }, { outcome: 'timeout', detail: 'slow' }, 'as', 'miss', /anonymous: slow/],
    ['bad response', { ...spoofs, ...bearer() }, { outcome: 'bad_response', detail: 'HTTP 500' }, 'as', 'miss', /anonymous: HTTP 500/],
  ];
  for (const [name, headers, result, endpoint, cache, detail] of cases) {
    const fake = fakeContext({ result, policies: [compiled(config)] });
    const note: DecisionNote = {};
    const allow = asAllow(t, await run(request(headers), fake, note));
    t.same(
      allow,
      {
        allow: true,
        reason: 'pass_through',
        policy: 'default',
        identity: null,
        headers: [{ name: 'x-auth-status', value: 'anonymous' }],
        removeHeaders: ['x-auth-subject', 'x_auth_status', 'x-auth-roles', 'authorization'],
        metadata: { policy: 'default', status: 'anonymous' },
        endpoint,
        cache,
      },
      name,
    );
    t.match(note.detail, detail, `${name}: detail`);
  }

  // A valid token the policy refuses is still refused: the client learns its token is not enough.
  const scoped = fakeContext({ result: active({ sub: 'alice', scope: 'write' }), policies: [compiled(config)] });
  t.equal(asDeny(t, await run(request(bearer()), scoped)).reason, 'insufficient_scope');
  const unnamed = fakeContext({ result: active({ client_id: 'x', scope: 'read' }), policies: [compiled(config)] });
  t.equal(asDeny(t, await run(request(bearer()), unnamed)).reason, 'policy_error');
  const good = fakeContext({ result: active({ sub: 'alice', scope: 'read' }), policies: [compiled(config)] });
  const allow = asAllow(t, await run(request({ ...bearer(), 'x-auth-status': 'anonymous' }), good));
  t.equal(allow.reason, 'ok');
  t.same(allow.removeHeaders, ['x-auth-status', 'authorization'], 'a client-sent marker never survives an authenticated allow');
});

t.test('passThrough: the unverified credential of an anonymous allow never reaches the upstream, unless passThroughCredentials', async (t) => {
  const open = compiled(policyConfig({ passThrough: true }));
  const cases: Array<[string, Record<string, string>, IntrospectionResult]> = [
    ['a forged or revoked token', bearer(), { outcome: 'inactive' }],
    ['a token nobody could verify', bearer(), { outcome: 'error', detail: 'ECONNREFUSED' }],
    ['an answer that is no answer', bearer(), { outcome: 'bad_response', detail: 'HTTP 500' }],
    ['a malformed token', { authorization: 'Bearer a"b' }, { outcome: 'inactive' }],
    ['another scheme', { authorization: 'Basic eDp5' }, { outcome: 'inactive' }],
  ];
  for (const [name, headers, result] of cases) {
    const allow = asAllow(t, await run(request(headers), fakeContext({ result, policies: [open] })));
    t.equal(allow.reason, 'pass_through', name);
    t.ok(allow.removeHeaders.includes('authorization'), `${name}: removed by default`);
    const keeping = compiled(policyConfig({ passThrough: true, passThroughCredentials: true }));
    const kept = asAllow(t, await run(request(headers), fakeContext({ result, policies: [keeping] })));
    t.notOk(kept.removeHeaders.includes('authorization'), `${name}: forwarded with passThroughCredentials`);
  }
  const verified = asAllow(t, await run(request(bearer()), fakeContext({ result: active({ sub: 'alice' }), policies: [open] })));
  t.equal(verified.reason, 'ok');
  t.notOk(verified.removeHeaders.includes('authorization'), 'a verified token is forwarded as before (hideCredentials decides)');
});

t.test('spoofed headers of every policy are removed, whichever policy decides', async (t) => {
  const main = policyConfig({ name: 'main' });
  const partner = policyConfig({ name: 'partner', identityHeader: 'x-partner-id', headerPrefix: 'x-partner-', attributesHeader: 'x-claims' });
  const policies = compilePolicies([main, partner], new Map([['as', endpointAs]]));
  const fake = fakeContext({ result: active({ sub: 'alice' }), policies: [...policies.values()] });
  const allow = asAllow(t, await run(request({ ...bearer(), 'x-partner-id': 'evil', 'x-partner-tier': 'gold', x_claims: 'e30', 'x-auth-a': '1' }), fake));
  t.equal(allow.policy, 'main');
  t.same(allow.removeHeaders, ['x-partner-id', 'x-partner-tier', 'x_claims', 'x-auth-a']);
});

t.test('policy selection by host and path (no context_extensions)', async (t) => {
  const make = (name: string, match: Array<Record<string, string>>) => compiled(policyConfig({ name, match, realm: name }));
  const policies = [
    make('default', []),
    make('orders', [{ host: 'api.example.com', pathPrefix: '/orders' }]),
    make('wild', [{ host: '*.example.com' }]),
    make('admin', [{ pathPrefix: '/admin' }]),
  ];
  const at = (host: string, path: string, extensions: Record<string, string> = {}): AuthRequest => ({ ...request({}, extensions), host, path });
  const cases: Array<[AuthRequest, string]> = [
    [at('api.example.com', '/orders/42?x=1'), 'orders'],
    [at('API.example.com:443', '/orders'), 'orders'],
    [at('api.example.com', '/cart'), 'wild'],
    [at('shop.example.com', '/admin'), 'wild'],
    [at('other.org', '/admin/users'), 'admin'],
    [at('other.org', '/'), 'default'],
    [at('api.example.com', '/orders/1', { policy: 'admin' }), 'admin'],
  ];
  for (const [req, want] of cases) {
    const fake = fakeContext({ policies, defaultPolicy: 'default' });
    const deny = asDeny(t, await run(req, fake));
    t.equal(deny.policy, want, `${req.host} ${req.path} ${[...req.contextExtensions.values()].join('')}`);
  }
});

t.test('a path not in normal form that a prefix would judge: 400, nobody asked', async (t) => {
  const policies = [compiled(policyConfig({ name: 'open' })), compiled(policyConfig({ name: 'admin', match: [{ pathPrefix: '/admin' }] }))];
  for (const path of ['/public/../admin', '/admin/..;/x', '//admin', '/%61dmin', '/x%2f..%2fadmin']) {
    const fake = fakeContext({ result: active({ sub: 'alice' }), policies, defaultPolicy: 'open' });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run({ ...request(bearer()), path }, fake, note));
    t.same(
      deny,
      {
        allow: false,
        reason: 'invalid_request',
        policy: null,
        status: 400,
        challenge: null,
        bearerError: null,
        description: 'the request path is not in normal form',
        endpoint: null,
        cache: 'none',
      },
      path,
    );
    t.equal(fake.calls.length, 0, `${path}: no introspection`);
    t.match(note.detail, /not in normal form/);
  }
  const named = fakeContext({ result: active({ sub: 'alice' }), policies, defaultPolicy: 'open' });
  t.equal((await run({ ...request(bearer(), { policy: 'open' }), path: '/a/../admin' }, named)).allow, true, 'context_extensions decide: the path does not matter');
});

t.test('a Host that is not a valid host[:port] where a host rule would judge: 400, nobody asked', async (t) => {
  const policies = [
    compiled(policyConfig({ name: 'open', passThrough: true })),
    compiled(policyConfig({ name: 'api', match: [{ host: 'api.example.com' }] })),
  ];
  for (const host of ['api.example.com:1@evil', 'api.example.com:443:1', 'evil@api.example.com', '']) {
    const fake = fakeContext({ result: active({ sub: 'alice' }), policies, defaultPolicy: 'open' });
    const note: DecisionNote = {};
    const deny = asDeny(t, await run({ ...request({}), host }, fake, note));
    t.same(
      { reason: deny.reason, status: deny.status, policy: deny.policy, description: deny.description },
      { reason: 'invalid_request', status: 400, policy: null, description: 'the request host is not a valid host name' },
      `${JSON.stringify(host)}: neither the api policy nor the anonymous default`,
    );
    t.equal(fake.calls.length, 0, `${host}: no introspection`);
    t.match(note.detail, /not a valid host/);
  }
});

t.test('what an allow left out is noted for the log line', async (t) => {
  const config = policyConfig({ mappedIdentity: '{sub}', identityFallback: 'service', exposeHeaders: true });
  const fake = fakeContext({ result: active({ client_id: 'app', bad: 'a\r\nb' }), policies: [compiled(config)] });
  const note: DecisionNote = {};
  const allow = asAllow(t, await run(request(bearer()), fake, note));
  t.equal(allow.identity, 'service');
  t.match(note.detail, /identityFallback used/);
  t.match(note.detail, /left out: header for bad \(control characters\)/);
});

t.test('enforcement: dryRun: a would-be deny goes on as anonymous, the deny kept on the record', async (t) => {
  const spoofs = { 'x-auth-subject': 'mallory', x_auth_status: 'x', 'x-auth-roles': 'admin' };
  const cases: Array<[string, Record<string, string>, IntrospectionResult, Deny['reason'], number, string | null, CacheResult, RegExp]> = [
    ['missing token', spoofs, { outcome: 'inactive' }, 'missing_token', 401, null, 'none', /^dry run: a bearer token is required$/],
    ['inactive', { ...spoofs, ...bearer() }, { outcome: 'inactive' }, 'inactive', 401, 'as', 'negative_hit', /not active/],
    ['insufficient scope', { ...spoofs, ...bearer() }, active({ sub: 'alice', scope: 'write' }), 'insufficient_scope', 403, 'as', 'hit', /scope/],
    ['unreachable', { ...spoofs, ...bearer() }, { outcome: 'error', detail: 'ECONNREFUSED' }, 'introspection_error', 401, 'as', 'miss', /^dry run: ECONNREFUSED$/],
  ];
  for (const hideCredentials of [false, true]) {
    const config = policyConfig({ enforcement: 'dryRun', hideCredentials, mappedIdentity: '{sub}', scopes: 'read', exposeHeaders: true });
    for (const [name, headers, result, reason, status, endpoint, cache, detail] of cases) {
      const note: DecisionNote = {};
      const allow = asAllow(t, await run(request(headers), fakeContext({ result, cache, policies: [compiled(config)] }), note));
      const removed = ['x-auth-subject', 'x_auth_status', 'x-auth-roles', ...('authorization' in headers || hideCredentials ? ['authorization'] : [])];
      t.same(
        allow,
        {
          allow: true,
          reason: 'dry_run',
          policy: 'default',
          identity: null,
          headers: [{ name: 'x-auth-status', value: 'anonymous' }],
          removeHeaders: removed,
          metadata: { policy: 'default', status: 'anonymous' },
          endpoint,
          cache,
          wouldDeny: { reason, status },
        },
        `${name}, hideCredentials ${hideCredentials}: anonymous, nothing of the token`,
      );
      t.match(note.detail, detail, `${name}: the would-be reason's detail is noted`);
    }
  }

  // An allow is the same decision as under enforce.
  for (const hideCredentials of [false, true]) {
    const claims = active({ sub: 'alice', scope: 'read', roles: 'admin' });
    const dry = compiled(policyConfig({ enforcement: 'dryRun', hideCredentials, mappedIdentity: '{sub}', scopes: 'read', exposeHeaders: true }));
    const enforced = compiled(policyConfig({ hideCredentials, mappedIdentity: '{sub}', scopes: 'read', exposeHeaders: true }));
    const headers = { ...bearer(), 'x-auth-status': 'anonymous', x_auth_sub: 'mallory' };
    const allowed = asAllow(t, await run(request(headers), fakeContext({ result: claims, policies: [dry] })));
    t.same(allowed, await run(request(headers), fakeContext({ result: claims, policies: [enforced] })), `hideCredentials ${hideCredentials}: ok unchanged`);
    t.equal(allowed.reason, 'ok');
    t.equal(allowed.identity, 'alice');
    t.equal(allowed.wouldDeny, undefined);
  }

  // A request no policy judged (unknown name, path not in normal form) is still denied: there is no dryRun to apply.
  const unknown = fakeContext({ policies: [compiled(policyConfig({ enforcement: 'dryRun' }))] });
  t.equal(asDeny(t, await run(request(bearer(), { policy: 'nope' }), unknown)).reason, 'policy_error');
});

t.test('no decision carries a token', async (t) => {
  t.ok(decisions.length > 40, `${decisions.length} decisions checked`);
  for (const decision of decisions) {
    const json = JSON.stringify(decision);
    t.notOk(json.includes(TOKEN), `${decision.reason}: no token`);
    t.notOk(json.includes(OTHER_TOKEN), `${decision.reason}: no second token`);
    t.notOk(json.includes('tOk3n'), `${decision.reason}: no part of the token`);
  }
});
