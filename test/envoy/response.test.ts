import t from 'tap';
import { isUtf8 } from 'node:buffer';
import type { Allow, Deny } from '../../src/decision.js';
import { encodeCheckResponse, RpcCode } from '../../src/envoy/response.js';
import { MAX_ATTRIBUTE_DEPTH, withinDepth } from '../../src/policy/evaluate.js';
import { checkResponseOf, decodeCheckResponse } from '../support/wire.js';

function allowDecision(overrides: Partial<Allow> = {}): Allow {
  return {
    allow: true,
    reason: 'ok',
    policy: 'default',
    identity: 'alice',
    headers: [
      { name: 'x-auth-subject', value: 'alice' },
      { name: 'x-auth-client', value: 'app' },
    ],
    removeHeaders: ['x_auth_subject', 'x-auth-roles'],
    metadata: { identity: 'alice', client: 'app' },
    endpoint: 'as',
    cache: 'miss',
    ...overrides,
  };
}

function denyDecision(overrides: Partial<Deny> = {}): Deny {
  return {
    allow: false,
    reason: 'inactive',
    policy: 'default',
    status: 401,
    challenge: 'Bearer realm="api", error="invalid_token", error_description="the token is not active"',
    bearerError: 'invalid_token',
    description: 'the token is not active',
    endpoint: 'as',
    cache: 'miss',
    ...overrides,
  };
}

const overwrite = (key: string, value: string) => ({
  header: { key, value },
  append: { value: false },
  append_action: 2,
});

/** Repeated fields the service never sets decode as empty lists. */
const STATUS_UNSET = { details: [] };
const OK_UNSET = { response_headers_to_add: [], query_parameters_to_set: [], query_parameters_to_remove: [] };

t.test('allow', async (t) => {
  const decision = allowDecision();
  const response = checkResponseOf(decision);
  t.same(response, {
    status: { code: 0, ...STATUS_UNSET },
    ok_response: {
      headers: [overwrite('x-auth-subject', 'alice'), overwrite('x-auth-client', 'app')],
      headers_to_remove: ['x_auth_subject', 'x-auth-roles'],
      ...OK_UNSET,
    },
    dynamic_metadata: { fields: { identity: { stringValue: 'alice' }, client: { stringValue: 'app' } } },
  });
  t.equal(response.status.code, RpcCode.OK);
  t.equal(response.denied_response, undefined, 'no denied_response');
  for (const header of response.ok_response!.headers) {
    t.same(header.append, { value: false }, `${header.header.key}: append false`);
    t.equal(header.append_action, 2, `${header.header.key}: OVERWRITE_IF_EXISTS_OR_ADD`);
  }
});

t.test('allow without headers or metadata', async (t) => {
  const response = checkResponseOf(allowDecision({ headers: [], removeHeaders: [], metadata: {}, identity: null }));
  t.same(response, {
    status: { code: 0, ...STATUS_UNSET },
    ok_response: { headers: [], headers_to_remove: [], ...OK_UNSET },
    dynamic_metadata: { fields: {} },
  });
});

t.test('deny: a non-zero code for every status', async (t) => {
  const cases: Array<[number, number]> = [
    [400, RpcCode.INVALID_ARGUMENT],
    [401, RpcCode.UNAUTHENTICATED],
    [403, RpcCode.PERMISSION_DENIED],
    [404, RpcCode.PERMISSION_DENIED],
    [429, RpcCode.PERMISSION_DENIED],
    [500, RpcCode.INTERNAL],
    [501, RpcCode.INTERNAL],
    [502, RpcCode.UNAVAILABLE],
    [503, RpcCode.UNAVAILABLE],
    [504, RpcCode.UNAVAILABLE],
  ];
  for (const [status, code] of cases) {
    const response = checkResponseOf(denyDecision({ status, challenge: null, bearerError: null, reason: 'bad_response' }));
    t.equal(response.status.code, code, `${status}: code`);
    t.not(response.status.code, 0, `${status}: never OK`);
    t.equal(response.status.message, 'bad_response', `${status}: message is the reason`);
    t.equal(response.denied_response?.status.code, status, `${status}: HTTP status`);
    t.equal(response.ok_response, undefined, `${status}: no ok_response`);
    t.equal(response.dynamic_metadata, undefined, `${status}: no metadata`);
  }
});

t.test('deny with a challenge', async (t) => {
  const decision = denyDecision();
  const response = checkResponseOf(decision);
  t.same(response, {
    status: { code: RpcCode.UNAUTHENTICATED, message: 'inactive', ...STATUS_UNSET },
    denied_response: {
      status: { code: 401 },
      headers: [
        overwrite('content-type', 'application/json'),
        overwrite('cache-control', 'no-store'),
        overwrite('www-authenticate', decision.challenge!),
      ],
      body: '{"error":"invalid_token","error_description":"the token is not active"}',
    },
  });
});

t.test('deny without a challenge has no www-authenticate', async (t) => {
  const response = checkResponseOf(
    denyDecision({ reason: 'policy_error', status: 403, challenge: null, bearerError: null, description: 'the token does not identify its holder' }),
  );
  const headers = response.denied_response!.headers;
  t.same(
    headers.map((h) => h.header.key),
    ['content-type', 'cache-control'],
  );
  t.ok(headers.every((h) => h.append.value === false && h.append_action === 2), 'every header overwrites');
  t.same(JSON.parse(response.denied_response!.body), {
    error: 'policy_error',
    error_description: 'the token does not identify its holder',
  }, 'the reason stands in for a missing bearer error');
});

t.test('the deny body has exactly error and error_description', async (t) => {
  const decisions: Deny[] = [
    denyDecision(),
    denyDecision({ reason: 'missing_token', bearerError: null, challenge: 'Bearer realm="api"', description: 'a bearer token is required', endpoint: null, cache: 'none' }),
    denyDecision({ reason: 'invalid_request', status: 400, bearerError: 'invalid_request', description: 'more than one Authorization header' }),
    denyDecision({ reason: 'introspection_error', status: 503, bearerError: null, challenge: null, description: 'the token could not be verified' }),
    denyDecision({ reason: 'policy_error', status: 500, policy: null, bearerError: null, challenge: null, description: 'the route is not configured correctly' }),
    denyDecision({ description: 'with "quotes" and \\ backslash and \n newline' }),
  ];
  for (const decision of decisions) {
    const response = checkResponseOf(decision);
    const contentType = response.denied_response!.headers.find((h) => h.header.key === 'content-type');
    t.equal(contentType?.header.value, 'application/json', `${decision.reason}: json`);
    const body = JSON.parse(response.denied_response!.body) as Record<string, unknown>;
    t.same(Object.keys(body), ['error', 'error_description'], `${decision.reason}: only two keys`);
    t.equal(body.error, decision.bearerError ?? decision.reason, `${decision.reason}: error`);
    t.equal(body.error_description, decision.description, `${decision.reason}: description`);
    for (const leaked of [decision.policy, decision.endpoint, decision.cache].filter((v) => v !== null && v !== 'none')) {
      t.notOk(response.denied_response!.body.includes(`"${leaked}"`), `${decision.reason}: no ${leaked} in the body`);
    }
    const challenge = response.denied_response!.headers.find((h) => h.header.key === 'www-authenticate');
    t.equal(challenge?.header.value ?? null, decision.challenge, `${decision.reason}: challenge`);
  }
});

t.test('dynamic_metadata: JSON values become google.protobuf.Value', async (t) => {
  const metadata = {
    policy: 'default',
    identity: 'alice',
    attributes: {
      scope: 'read write',
      exp: 1_900_000_000,
      ratio: 0.5,
      admin: false,
      nothing: null,
      aud: ['api', 2, true, null, { a: 'b' }],
      ext: { tier: 'gold', tags: [] },
      __proto__: 'kept as a key',
    },
  };
  Object.defineProperty(metadata.attributes, '__proto__', { value: 'kept as a key', enumerable: true });
  const response = checkResponseOf(allowDecision({ metadata }));
  const fields = response.dynamic_metadata!.fields;
  t.same(fields.policy, { stringValue: 'default' });
  t.same(fields.identity, { stringValue: 'alice' });
  const attributes = (fields.attributes as { structValue: { fields: Record<string, unknown> } }).structValue.fields;
  t.same(attributes.scope, { stringValue: 'read write' });
  t.same(attributes.exp, { numberValue: 1_900_000_000 });
  t.same(attributes.ratio, { numberValue: 0.5 });
  t.same(attributes.admin, { boolValue: false });
  t.same(attributes.nothing, { nullValue: 0 });
  t.same(attributes.aud, {
    listValue: {
      values: [{ stringValue: 'api' }, { numberValue: 2 }, { boolValue: true }, { nullValue: 0 }, { structValue: { fields: { a: { stringValue: 'b' } } } }],
    },
  });
  t.same(attributes.ext, { structValue: { fields: { tier: { stringValue: 'gold' }, tags: { listValue: { values: [] } } } } });
  t.ok(Object.hasOwn(attributes, '__proto__'), 'a claim named __proto__ is a field, not a prototype');
  t.same(Object.getOwnPropertyDescriptor(attributes, '__proto__')?.value, { stringValue: 'kept as a key' });
});

t.test('dynamic_metadata: what JSON cannot hold is left out; nesting stays within what Envoy parses', async (t) => {
  let deep: unknown = 'bottom';
  for (let i = 0; i < 100; i += 1) deep = [deep];
  let deepObject: unknown = 'bottom';
  for (let i = 0; i < 100; i += 1) deepObject = { a: deepObject };
  const metadata = { a: Number.NaN, b: undefined, c: 10n, d: [undefined], deep, deepObject } as unknown as Allow['metadata'];
  // protobufjs refuses, as protobuf's C++ parser in Envoy does, messages nested deeper than 100.
  const fields = checkResponseOf(allowDecision({ metadata })).dynamic_metadata!.fields;
  t.same(Object.keys(fields), ['d', 'deep', 'deepObject']);
  t.same(fields.d, { listValue: { values: [{ nullValue: 0 }] } }, 'an array keeps its length');
  let depth = 0;
  let value = fields.deep as { listValue?: { values: unknown[] } };
  while (value.listValue) {
    value = value.listValue.values[0] as typeof value;
    depth += 1;
  }
  t.same(value, { nullValue: 0 }, 'cut to null');
  t.ok(depth >= 40 && depth < 50, `a list is cut at depth ${depth}`);
  let objectDepth = 0;
  let member = fields.deepObject as { structValue?: { fields: { a: unknown } } };
  while (member.structValue) {
    member = member.structValue.fields.a as typeof member;
    objectDepth += 1;
  }
  t.same(member, { nullValue: 0 }, 'cut to null');
  t.ok(objectDepth >= 28 && objectDepth < 34, `an object is cut at depth ${objectDepth}`);
});

t.test('dynamic_metadata: the deepest attribute a policy lets through arrives whole', async (t) => {
  let deep: unknown = 'bottom';
  for (let i = 0; i < MAX_ATTRIBUTE_DEPTH; i += 1) deep = { a: deep };
  t.ok(withinDepth(deep, MAX_ATTRIBUTE_DEPTH), 'the policy keeps it');
  const metadata = { policy: 'p', status: 'authenticated', identity: 'alice', attributes: { deep } } as unknown as Allow['metadata'];
  const fields = checkResponseOf(allowDecision({ metadata })).dynamic_metadata!.fields;
  const attributes = (fields.attributes as { structValue: { fields: Record<string, unknown> } }).structValue.fields;
  let member = attributes.deep as { structValue?: { fields: { a: unknown } }; stringValue?: string };
  let depth = 0;
  while (member.structValue) {
    member = member.structValue.fields.a as typeof member;
    depth += 1;
  }
  t.equal(depth, MAX_ATTRIBUTE_DEPTH);
  t.same(member, { stringValue: 'bottom' });
});

t.test('dynamic_metadata: encoded once per metadata object', async (t) => {
  let reads = 0;
  const metadata = Object.freeze(
    Object.defineProperty({ identity: 'alice' }, 'scope', {
      enumerable: true,
      get: () => {
        reads += 1;
        return 'read';
      },
    }),
  ) as unknown as Allow['metadata'];
  const first = checkResponseOf(allowDecision({ metadata }));
  const second = checkResponseOf(allowDecision({ metadata, removeHeaders: ['x'] }));
  t.equal(reads, 1, 'read once');
  t.same(second.dynamic_metadata, first.dynamic_metadata, 'the same Struct');
  t.same(first.ok_response!.headers_to_remove, ['x_auth_subject', 'x-auth-roles']);
  t.same(second.ok_response!.headers_to_remove, ['x'], 'the rest is per response');
});

t.test('denies are remembered once encoded, within a bound, and never mixed up', async (t) => {
  const first = checkResponseOf(denyDecision({ description: 'deny number 0' }));
  for (let i = 1; i < 300; i += 1) {
    const response = checkResponseOf(denyDecision({ description: `deny number ${i}` }));
    t.equal(JSON.parse(response.denied_response!.body).error_description, `deny number ${i}`);
  }
  const again = checkResponseOf(denyDecision({ description: 'deny number 0' }));
  t.same(again, first, 'the same deny, after the memo was cleared');
  t.not(checkResponseOf(denyDecision({ status: 403, challenge: null })).denied_response!.status.code, 401);
});

t.test('dynamic_metadata: a lone surrogate in a claim is sent as U+FFFD, never as bytes that are not UTF-8', async (t) => {
  // JSON.parse makes one of "\ud800"; Envoy's parser refuses a proto3 string that is not UTF-8, and with it the whole answer.
  const metadata = { attributes: { short: 'a\ud800b', long: `${'x'.repeat(50)}\udc00`, pair: '\ud83d\ude00' } };
  const bytes = encodeCheckResponse(allowDecision({ metadata }));
  t.ok(isUtf8(bytes), 'every byte sequence is UTF-8');
  const attributes = (decodeCheckResponse(bytes).dynamic_metadata!.fields.attributes as { structValue: { fields: Record<string, unknown> } })
    .structValue.fields;
  t.same(attributes.short, { stringValue: 'a\ufffdb' });
  t.same(attributes.long, { stringValue: `${'x'.repeat(50)}\ufffd` });
  t.same(attributes.pair, { stringValue: '\ud83d\ude00' }, 'a surrogate pair is one character');
});
