/**
 * Decisions are data: the pipeline produces one of these, and one place per
 * edge turns it into an answer (envoy/response.ts: Envoy's CheckResponse;
 * http/response.ts: an HTTP answer to a proxy's sub-request).
 */

/** Why a request was allowed or denied: used alike in logs, metrics and deny bodies. */
export type Reason =
  | 'ok'
  | 'missing_token'
  | 'invalid_request'
  | 'inactive'
  | 'insufficient_scope'
  | 'client_not_allowed'
  | 'introspection_error'
  | 'bad_response'
  | 'policy_error'
  | 'pass_through'
  /** enforcement: dryRun: the request would have been denied (wouldDeny says why) and goes on as anonymous. */
  | 'dry_run'
  /** RFC 9449: the DPoP proof is missing, malformed, or does not match the request, the token or its cnf.jkt. */
  | 'invalid_dpop_proof'
  /** RFC 9449 section 9: the policy wants a server nonce, and the proof has none or an old one (the client retries with DPoP-Nonce). */
  | 'use_dpop_nonce'
  /** RFC 9449 section 11.1: the proof's jti was seen before within its window. */
  | 'dpop_replay'
  /** RFC 8705 section 3: no client certificate, or not the one cnf["x5t#S256"] names. */
  | 'certificate_mismatch'
  /** The policy requires a sender-constrained token (or the DPoP scheme was used) and the answer has no binding. */
  | 'unbound_token'
  /** RFC 9449 section 7.2: a DPoP-bound token presented with the Bearer scheme. */
  | 'bound_token_as_bearer'
  /** The answer's cnf binds the token by a method this service cannot check. */
  | 'unsupported_binding';

/** RFC 6750 section 3.1 error codes, and those RFC 9449 section 7.1 adds for the DPoP scheme. */
export type BearerError = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce';

export interface HeaderToSet {
  readonly name: string;
  readonly value: string;
}

/**
 * A value of dynamic_metadata: what JSON can hold, rendered by envoy/response.ts
 * as a google.protobuf.Value.
 */
export type MetadataValue =
  | string
  | number
  | boolean
  | null
  | readonly MetadataValue[]
  | { readonly [key: string]: MetadataValue };

export type Metadata = Readonly<Record<string, MetadataValue>>;

/**
 * How the answer was obtained, for logs and metrics; negative_hit: a recent
 * inactive answer was reused; stale: the endpoint failed and an expired active
 * answer was served within its staleIfError window.
 */
export type CacheResult = 'hit' | 'negative_hit' | 'miss' | 'coalesced' | 'stale' | 'none';

export interface Allow {
  readonly allow: true;
  readonly reason: 'ok' | 'pass_through' | 'dry_run';
  readonly policy: string;
  readonly identity: string | null;
  /** Headers the upstream receives, each overwriting any client-sent copy. */
  readonly headers: readonly HeaderToSet[];
  /** Client-sent headers the upstream must not see. Never one of `headers`. */
  readonly removeHeaders: readonly string[];
  /** Becomes dynamic_metadata under Envoy's ext_authz filter namespace. */
  readonly metadata: Metadata;
  /** Headers added to the response the client gets (response_headers_to_add), such as DPoP-Nonce. */
  readonly responseHeaders?: readonly HeaderToSet[];
  readonly endpoint: string | null;
  readonly cache: CacheResult;
  /** With reason dry_run: the deny that enforcement would have answered. */
  readonly wouldDeny?: WouldDeny;
}

export interface WouldDeny {
  readonly reason: Deny['reason'];
  readonly status: number;
}

export interface Deny {
  readonly allow: false;
  readonly reason: Exclude<Reason, 'ok' | 'pass_through' | 'dry_run'>;
  readonly policy: string | null;
  /** HTTP status Envoy answers the client with. */
  readonly status: number;
  /** WWW-Authenticate value, when the status calls for one. */
  readonly challenge: string | null;
  /** RFC 6750 (or RFC 9449) error code for WWW-Authenticate, when one applies. */
  readonly bearerError: BearerError | null;
  /** A sentence for the client; never contains the token or a secret. */
  readonly description: string;
  /** Further headers of the deny answer (DPoP-Nonce with use_dpop_nonce). */
  readonly headers?: readonly HeaderToSet[];
  readonly endpoint: string | null;
  readonly cache: CacheResult;
}

export type Decision = Allow | Deny;

/** The JSON body of a deny, the same on every edge: RFC 6750's error code when one applies, else our reason. */
export function denyBody(decision: Deny): string {
  return JSON.stringify({ error: decision.bearerError ?? decision.reason, error_description: decision.description });
}
