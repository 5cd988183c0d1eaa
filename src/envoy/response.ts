/**
 * Decision -> CheckResponse: the one place that builds Envoy's answers.
 * Every answer is an OK RPC carrying a decision in `status`; a deny always
 * has a non-zero code, since an absent status reads as "allow".
 */
import type { Allow, Deny, Decision, HeaderToSet } from '../decision.js';
import type { CheckResponse, HeaderValueOption } from './protos.js';

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
  const fields: Record<string, { stringValue: string }> = {};
  for (const key of Object.keys(decision.metadata)) fields[key] = { stringValue: decision.metadata[key]! };
  return {
    status: { code: RpcCode.OK },
    ok_response: {
      headers: decision.headers.map(overwrite),
      headers_to_remove: [...decision.removeHeaders],
    },
    dynamic_metadata: { fields },
  };
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
