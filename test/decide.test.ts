import t, { type Test } from 'tap';
import type { AuthRequest } from '../src/auth-request.js';
import type { PolicyConfig } from '../src/config/load.js';
import { decide, type CompiledPolicy, type DecideContext, type DecisionNote } from '../src/decide.js';
import type { Allow, CacheResult, Decision, Deny } from '../src/decision.js';
import type { Answer, Endpoint } from '../src/introspection/introspector.js';
import type { IntrospectionResult } from '../src/introspection/result.js';
import { compileTemplate } from '../src/policy/identity-template.js';

const TOKEN = 'tOk3n.Sup3r-Secret_value~xyz';
const OTHER_TOKEN = 'Second.Token-Value_123';

/** Every decision made in this file, checked at the end for the tokens. */
const decisions: Decision[] = [];

function policyConfig(overrides: Partial<PolicyConfig> & { template?: string } = {}): PolicyConfig {
  const { template, ...rest } = overrides;
  return {
    name: 'default',
    endpoint: 'as',
    realm: 'api',
    mappedIdentity: compileTemplate(template ?? '{sub|username|client_id}'),
    identityHeader: 'x-auth-subject',
    headerPrefix: 'x-auth-',
    unreachableStatus: 401,
    badResponseStatus: 500,
    ...rest,
  };
}

const endpointAs: Endpoint = { name: 'as', introspect: () => Promise.reject(new Error('not used')) };
const endpointOther: Endpoint = { name: 'other-as', introspect: () => Promise.reject(new Error('not used')) };

function compiled(config: PolicyConfig, endpoint = endpointAs): CompiledPolicy {
  return { config, endpoint, ownHeaders: new Set([config.identityHeader]) };
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
    policies: byName,
    defaultPolicy,
    policySelector: options.policySelector ?? 'policy',
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
  const cases: Array<[string, Record<string, string | string[]>]> = [
    ['no Authorization header', {}],
    ['Basic credentials', { authorization: 'Basic dXNlcjpwYXNz' }],
    ['DPoP credentials', { authorization: 'DPoP abc' }],
  ];
  for (const [name, headers] of cases) {
    const fake = fakeContext({ result: active({ sub: 'alice' }) });
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
        metadata: { identity },
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

t.test('no decision carries a token', async (t) => {
  t.ok(decisions.length > 40, `${decisions.length} decisions checked`);
  for (const decision of decisions) {
    const json = JSON.stringify(decision);
    t.notOk(json.includes(TOKEN), `${decision.reason}: no token`);
    t.notOk(json.includes(OTHER_TOKEN), `${decision.reason}: no second token`);
    t.notOk(json.includes('tOk3n'), `${decision.reason}: no part of the token`);
  }
});
