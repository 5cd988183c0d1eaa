/**
 * Decision -> CheckResponse: the one place that builds Envoy's answers.
 * Every answer is an OK RPC carrying a decision in `status`; a deny always
 * has a non-zero code, since an absent status reads as "allow".
 */
import type { Allow, Deny, Decision, HeaderToSet, Metadata } from '../decision.js';
import type { CheckResponse, HeaderValueOption, ProtoValue, StructValue } from './protos.js';

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** google.rpc.Code values used in CheckResponse.status. */
export const RpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export function renderCheckResponse(decision: Decision): CheckResponse {
  return decision.allow ? renderAllow(decision) : renderDeny(decision);
}

/**
 * Both `append: false` and `append_action: OVERWRITE_IF_EXISTS_OR_ADD`: Envoy
 * versions differ in which one they read, and either alone lets some version
 * add our value beside a client-sent copy.
 */
function overwrite({ name, value }: HeaderToSet): HeaderValueOption {
  return { header: { key: name, value }, append: { value: false }, append_action: OVERWRITE_IF_EXISTS_OR_ADD };
}

function renderAllow(decision: Allow): CheckResponse {
  return {
    status: { code: RpcCode.OK },
    ok_response: {
      headers: decision.headers.map(overwrite),
      headers_to_remove: [...decision.removeHeaders],
    },
    dynamic_metadata: metadataStruct(decision.metadata),
  };
}

/**
 * Metadata objects are shared by every allow made from the same cached claims
 * (see CompiledPolicy.evaluations), so their Struct is built once and reused;
 * protobufjs only reads it.
 */
const structs = new WeakMap<Metadata, StructValue>();

function metadataStruct(metadata: Metadata): StructValue {
  let struct = structs.get(metadata);
  if (struct === undefined) {
    struct = toStruct(metadata, 0);
    structs.set(metadata, struct);
  }
  return struct;
}

/** Deeper values are cut to null: the policy code never sends them, and recursion must stay bounded. */
const MAX_DEPTH = 64;

function toStruct(object: object, depth: number): StructValue {
  // A null prototype: a claim may be named "__proto__".
  const fields: Record<string, ProtoValue> = Object.create(null);
  for (const key of Object.keys(object)) {
    const value = toValue((object as Record<string, unknown>)[key], depth + 1);
    if (value !== undefined) fields[key] = value;
  }
  return { fields };
}

/** A JSON value as google.protobuf.Value; undefined for what JSON cannot hold (left out). */
function toValue(value: unknown, depth: number): ProtoValue | undefined {
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'number':
      return Number.isFinite(value) ? { numberValue: value } : undefined;
    case 'boolean':
      return { boolValue: value };
    case 'object':
      if (value === null || depth > MAX_DEPTH) return { nullValue: 0 };
      if (Array.isArray(value)) {
        const values: ProtoValue[] = [];
        for (const item of value) values.push(toValue(item, depth + 1) ?? { nullValue: 0 });
        return { listValue: { values } };
      }
      return { structValue: toStruct(value, depth) };
    default:
      return undefined;
  }
}

function renderDeny(decision: Deny): CheckResponse {
  const headers: HeaderToSet[] = [
    { name: 'content-type', value: 'application/json' },
    { name: 'cache-control', value: 'no-store' },
  ];
  if (decision.challenge) headers.push({ name: 'www-authenticate', value: decision.challenge });
  const body = JSON.stringify({
    error: decision.bearerError ?? decision.reason,
    error_description: decision.description,
  });
  return {
    status: { code: rpcCodeFor(decision.status), message: decision.reason },
    denied_response: {
      status: { code: decision.status },
      headers: headers.map(overwrite),
      body,
    },
  };
}

function rpcCodeFor(httpStatus: number): number {
  if (httpStatus === 401) return RpcCode.UNAUTHENTICATED;
  if (httpStatus === 403) return RpcCode.PERMISSION_DENIED;
  if (httpStatus === 503 || httpStatus === 502 || httpStatus === 504) return RpcCode.UNAVAILABLE;
  if (httpStatus >= 500) return RpcCode.INTERNAL;
  if (httpStatus === 400) return RpcCode.INVALID_ARGUMENT;
  return RpcCode.PERMISSION_DENIED;
}
