// The direct encoder of src/envoy/response.ts against protobufjs: for random
// decisions, the bytes it writes are exactly those protobufjs writes for the
// same CheckResponse message (fromObject then encode, with our protos).
import t from 'tap';
import fc from 'fast-check';
import type { Allow, Deny, HeaderToSet, Metadata } from '../../src/decision.js';
import { denyBody } from '../../src/decision.js';
import { encodeCheckResponse, RpcCode } from '../../src/envoy/response.js';
import { assertProperty } from '../support/property.js';
import { encodeCheckResponseMessage } from '../support/wire.js';

/** Any well-formed text (a lone surrogate has no UTF-8 form: see response.test.ts), empty included. */
const text = fc.string({ unit: 'binary', maxLength: 40 });
const shortText = fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 6 }));
// A "__proto__" key would set protobufjs' message prototype instead of a map entry.
const key = fc.oneof(shortText, fc.constantFrom('0', '7', '42', 'exp', 'scope')).filter((name) => name !== '__proto__');

const header: fc.Arbitrary<HeaderToSet> = fc.record({ name: shortText, value: fc.oneof(text, fc.string({ unit: 'binary', minLength: 100, maxLength: 300 })) });
const headers = fc.array(header, { maxLength: 6 });

const { value: metadataValue } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 5 },
    text,
    fc.double(),
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
}));
const metadata = fc.dictionary(key, metadataValue, { maxKeys: 6 }) as fc.Arbitrary<Metadata>;

const allow: fc.Arbitrary<Allow> = fc
  .record({
    headers,
    removeHeaders: fc.array(shortText, { maxLength: 4 }),
    metadata,
    responseHeaders: fc.option(fc.array(header, { maxLength: 2 }), { nil: undefined }),
  })
  .map(({ responseHeaders, ...parts }) => ({
    allow: true,
    reason: 'ok',
    policy: 'p',
    identity: 'someone',
    endpoint: 'as',
    cache: 'hit',
    ...parts,
    ...(responseHeaders === undefined ? {} : { responseHeaders }),
  }));

const deny: fc.Arbitrary<Deny> = fc
  .record({
    status: fc.constantFrom(400, 401, 403, 500, 502, 503, 504),
    reason: fc.constantFrom('inactive', 'missing_token', 'insufficient_scope', 'introspection_error', 'use_dpop_nonce'),
    challenge: fc.option(text, { nil: null }),
    bearerError: fc.constantFrom(null, 'invalid_token', 'insufficient_scope'),
    description: text,
    headers: fc.option(fc.array(header, { maxLength: 2 }), { nil: undefined }),
  })
  .map(({ headers: extra, ...parts }) => ({
    allow: false,
    policy: 'p',
    endpoint: null,
    cache: 'none',
    ...parts,
    ...(extra === undefined ? {} : { headers: extra }),
  })) as fc.Arbitrary<Deny>;

// The message, as Envoy's protos describe it (google.protobuf.Struct members camelCase, as protobufjs names them).

function option({ name, value }: HeaderToSet): object {
  return { header: { key: name, value }, append: { value: false }, append_action: 2 };
}

function protoValue(value: unknown): object {
  if (value === null) return { nullValue: 0 };
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'number':
      return Number.isFinite(value) ? { numberValue: value } : { nullValue: 0 };
    case 'boolean':
      return { boolValue: value };
  }
  if (Array.isArray(value)) return { listValue: { values: value.map(protoValue) } };
  return { structValue: protoStruct(value as Record<string, unknown>) };
}

/** What JSON cannot hold is no member of a Struct. */
function protoStruct(object: Readonly<Record<string, unknown>>): object {
  const fields: Record<string, object> = {};
  for (const name of Object.keys(object)) {
    const value = object[name];
    if (typeof value === 'number' && !Number.isFinite(value)) continue;
    fields[name] = protoValue(value);
  }
  return { fields };
}

function allowMessage(decision: Allow): object {
  return {
    status: { code: RpcCode.OK },
    ok_response: {
      headers: decision.headers.map(option),
      headers_to_remove: decision.removeHeaders,
      response_headers_to_add: (decision.responseHeaders ?? []).map(option),
    },
    dynamic_metadata: protoStruct(decision.metadata),
  };
}

const RPC_CODES: Readonly<Record<number, number>> = {
  400: RpcCode.INVALID_ARGUMENT,
  401: RpcCode.UNAUTHENTICATED,
  403: RpcCode.PERMISSION_DENIED,
  500: RpcCode.INTERNAL,
  502: RpcCode.UNAVAILABLE,
  503: RpcCode.UNAVAILABLE,
  504: RpcCode.UNAVAILABLE,
};

function denyMessage(decision: Deny): object {
  const headers = [
    { name: 'content-type', value: 'application/json' },
    { name: 'cache-control', value: 'no-store' },
    ...(decision.challenge ? [{ name: 'www-authenticate', value: decision.challenge }] : []),
    ...(decision.headers ?? []),
  ];
  return {
    status: { code: RPC_CODES[decision.status], message: decision.reason },
    denied_response: { status: { code: decision.status }, headers: headers.map(option), body: denyBody(decision) },
  };
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

t.test('an allow: the bytes protobufjs writes, with and without per-request parts', async (t) => {
  assertProperty(
    fc.property(allow, fc.array(shortText, { minLength: 1, maxLength: 3 }), (decision, others) => {
      // Encoded twice: the second time from the parts remembered for the same headers and metadata.
      const again: Allow = { ...decision, removeHeaders: others, responseHeaders: undefined };
      for (const one of [decision, again, decision]) {
        const ours = hex(encodeCheckResponse(one));
        const theirs = hex(encodeCheckResponseMessage(allowMessage(one)));
        if (ours !== theirs) throw new Error(`differs:\n ours   ${ours}\n theirs ${theirs}`);
      }
    }),
    300,
  );
  t.pass('every run matched');
});

t.test('a deny: the bytes protobufjs writes', async (t) => {
  assertProperty(
    fc.property(deny, (decision) => {
      const ours = hex(encodeCheckResponse(decision));
      const theirs = hex(encodeCheckResponseMessage(denyMessage(decision)));
      if (ours !== theirs) throw new Error(`differs:\n ours   ${ours}\n theirs ${theirs}`);
    }),
    300,
  );
  t.pass('every run matched');
});
