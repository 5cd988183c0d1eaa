/**
 * The pipeline: request -> policy -> credentials -> introspection -> policy
 * evaluation -> Decision. Orchestration only; each step lives in its module,
 * and the only I/O is behind the injected introspector.
 */
import { headerValues, type AuthRequest } from './auth-request.js';
import type { PolicyConfig } from './config/load.js';
import { extractBearer } from './credentials/bearer.js';
import type { Allow, BearerError, CacheResult, Decision, Deny, HeaderToSet } from './decision.js';
import type { Answer, CallerSignal, Endpoint } from './introspection/introspector.js';
import type { CompiledPolicy } from './policy/compile.js';
import { selectEndpoint } from './policy/endpoint-selection.js';
import { evaluatePolicy } from './policy/evaluate.js';
import { matchRoute, type RouteTable } from './policy/routes.js';
import { spoofedHeaders } from './policy/upstream-headers.js';

export type { CompiledPolicy } from './policy/compile.js';

export interface DecideContext {
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
  readonly defaultPolicy: CompiledPolicy;
  /** context_extensions key naming the policy of a route. */
  readonly policySelector: string;
  /** Host and path rules of every policy (empty when none has `match`). */
  readonly routes: RouteTable;
  readonly maxTokenLength: number;
  introspect(endpoint: Endpoint, token: string, signal: CallerSignal): Promise<Answer>;
}

/** Extra detail for the log line of a decision; never shown to the client. */
export interface DecisionNote {
  detail?: string;
}

export async function decide(
  request: AuthRequest,
  context: DecideContext,
  signal: CallerSignal,
  note: DecisionNote = {},
): Promise<Decision> {
  const selected = selectPolicy(request, context);
  if (!selected.ok) {
    note.detail = selected.detail;
    switch (selected.problem) {
      case 'abnormal_path':
        return deny(null, 'invalid_request', 400, null, 'the request path is not in normal form', null, 'none');
      case 'invalid_host':
        return deny(null, 'invalid_request', 400, null, 'the request host is not a valid host name', null, 'none');
      case 'unknown_policy':
        return deny(null, 'policy_error', 500, null, 'the route is not configured correctly', null, 'none');
    }
  }
  const policy = selected.policy;
  const config = policy.config;

  const bearer = extractBearer(headerValues(request, 'authorization'), context.maxTokenLength);
  if (bearer.kind === 'missing') {
    if (config.passThrough) return anonymous(policy, request, null, 'none', note, 'no bearer token');
    return deny(config, 'missing_token', 401, null, 'a bearer token is required', null, 'none');
  }
  if (bearer.kind === 'invalid') {
    if (config.passThrough) return anonymous(policy, request, null, 'none', note, bearer.description);
    return deny(config, 'invalid_request', 400, 'invalid_request', bearer.description, null, 'none');
  }

  const chosen = selectEndpoint(policy, bearer.token);
  if (chosen === null) {
    note.detail = 'the token names an issuer none of the policy\'s endpoints has';
    if (config.passThrough) return anonymous(policy, request, null, 'none', note, 'the token is not active');
    return deny(config, 'inactive', 401, 'invalid_token', 'the token is not active', null, 'none');
  }
  const { result, cache } = await context.introspect(chosen, bearer.token, signal);
  const endpoint = chosen.name;
  switch (result.outcome) {
    case 'inactive':
      if (config.passThrough) return anonymous(policy, request, endpoint, cache, note, 'the token is not active');
      return deny(config, 'inactive', 401, 'invalid_token', 'the token is not active', endpoint, cache);
    case 'error':
    case 'timeout':
    case 'circuit_open':
      note.detail = result.detail;
      if (config.passThrough) return anonymous(policy, request, endpoint, cache, note, result.detail);
      return deny(
        config,
        'introspection_error',
        config.unreachableStatus,
        // Not invalid_token: the token may be fine, and that code tells clients to drop it.
        null,
        'the token could not be verified',
        endpoint,
        cache,
      );
    case 'bad_response':
      note.detail = result.detail;
      if (config.passThrough) return anonymous(policy, request, endpoint, cache, note, result.detail);
      return deny(config, 'bad_response', config.badResponseStatus, null, 'the token could not be verified', endpoint, cache);
    case 'active':
      break;
  }

  let evaluation = policy.evaluations.get(result.claims);
  if (evaluation === undefined) {
    evaluation = evaluatePolicy(config, result.claims);
    policy.evaluations.set(result.claims, evaluation);
  }
  if (!evaluation.ok) {
    note.detail = evaluation.log;
    const challenge = evaluation.reason === 'insufficient_scope' ? policy.scopeChallenge : undefined;
    return deny(config, evaluation.reason, 403, evaluation.bearerError, evaluation.description, endpoint, cache, challenge);
  }
  if (evaluation.note !== undefined) note.detail = evaluation.note;
  return {
    allow: true,
    reason: 'ok',
    policy: config.name,
    identity: evaluation.identity,
    headers: evaluation.headers,
    removeHeaders: removals(request, policy, evaluation.headers),
    metadata: evaluation.metadata,
    endpoint,
    cache,
  };
}

/**
 * passThrough (Express Gateway): no usable token, so the request goes on as
 * anonymous: no identity, only the status marker, spoofed headers still removed.
 */
function anonymous(
  policy: CompiledPolicy,
  request: AuthRequest,
  endpoint: string | null,
  cache: CacheResult,
  note: DecisionNote,
  why: string,
): Allow {
  note.detail = `anonymous: ${why}`;
  return {
    allow: true,
    reason: 'pass_through',
    policy: policy.config.name,
    identity: null,
    headers: policy.anonymous.headers,
    removeHeaders: removals(request, policy, policy.anonymous.headers, true),
    metadata: policy.anonymous.metadata,
    endpoint,
    cache,
  };
}

/**
 * Client copies of our headers, and the credential itself under
 * hideCredentials (Kong: hide_credentials) or on an anonymous allow: that
 * credential is unverified (forged, revoked, or one the endpoint could not
 * judge), and an upstream that reads it itself would trust it.
 */
function removals(request: AuthRequest, policy: CompiledPolicy, setByUs: readonly HeaderToSet[], anonymous = false): string[] {
  const remove = spoofedHeaders(request.headers.keys(), policy.prefixes, policy.ownHeaders, setByUs);
  const { hideCredentials, passThroughCredentials } = policy.config;
  if (hideCredentials || (anonymous && !passThroughCredentials && request.headers.has('authorization'))) remove.push('authorization');
  return remove;
}

type Selection =
  | { ok: true; policy: CompiledPolicy }
  | { ok: false; problem: 'unknown_policy' | 'abnormal_path' | 'invalid_host'; detail: string };

/**
 * The route's policy: named by the proxy's configuration (the HTTP edge's
 * sub-request path, or Envoy's context_extensions), else by the host
 * and path rules, else the default. An unknown name is a configuration error
 * and never falls back to the default, which may be weaker than what the
 * route asked for; so is a path or host that a rule would judge but that is
 * not in normal form.
 */
function selectPolicy(request: AuthRequest, context: DecideContext): Selection {
  const name = request.policy ?? request.contextExtensions.get(context.policySelector);
  if (name !== undefined) {
    const policy = context.policies.get(name);
    if (!policy) return { ok: false, problem: 'unknown_policy', detail: `the route names policy "${name}", which is not configured` };
    return { ok: true, policy };
  }
  const match = matchRoute(context.routes, request.host, request.path);
  switch (match.kind) {
    case 'none':
      return { ok: true, policy: context.defaultPolicy };
    case 'abnormal_path':
      return { ok: false, problem: 'abnormal_path', detail: 'the path is not in normal form and a path prefix rule would decide the policy' };
    case 'invalid_host':
      return { ok: false, problem: 'invalid_host', detail: 'the host is not a valid host[:port] and a host rule would decide the policy' };
    case 'policy':
      // compileRoutes only names configured policies.
      return { ok: true, policy: context.policies.get(match.policy)! };
  }
}

function deny(
  policy: PolicyConfig | null,
  reason: Deny['reason'],
  status: number,
  bearerError: BearerError | null,
  description: string,
  endpoint: string | null,
  cache: CacheResult,
  challenge = challengeFor(policy, status, bearerError, description),
): Deny {
  return {
    allow: false,
    reason,
    policy: policy?.name ?? null,
    status,
    challenge,
    bearerError,
    description,
    endpoint,
    cache,
  };
}

/**
 * WWW-Authenticate per RFC 6750 section 3: on every 401, and with the error
 * code on 400/403 bearer errors. Descriptions are our own fixed sentences, free
 * of quotes and backslashes.
 */
function challengeFor(
  policy: PolicyConfig | null,
  status: number,
  bearerError: BearerError | null,
  description: string,
): string | null {
  if (status !== 401 && bearerError === null) return null;
  const realm = `Bearer realm="${policy?.realm ?? 'api'}"`;
  if (bearerError === null) return realm;
  return `${realm}, error="${bearerError}", error_description="${description}"`;
}
