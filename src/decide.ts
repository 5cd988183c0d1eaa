/**
 * The pipeline: request -> credentials -> policy -> introspection -> policy
 * evaluation -> Decision. Orchestration only; each step lives in its module,
 * and the only I/O is behind the injected introspector.
 */
import { headerValues, type AuthRequest } from './auth-request.js';
import type { PolicyConfig } from './config/load.js';
import { extractBearer } from './credentials/bearer.js';
import type { BearerError, CacheResult, Decision, Deny } from './decision.js';
import type { Answer, Endpoint } from './introspection/introspector.js';
import { evaluatePolicy } from './policy/evaluate.js';
import { spoofedHeaders } from './policy/upstream-headers.js';

export interface DecideContext {
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
  readonly defaultPolicy: CompiledPolicy;
  /** context_extensions key naming the policy of a route. */
  readonly policySelector: string;
  readonly maxTokenLength: number;
  introspect(endpoint: Endpoint, token: string, signal: AbortSignal): Promise<Answer>;
}

/** A policy with what it needs at request time resolved once. */
export interface CompiledPolicy {
  readonly config: PolicyConfig;
  readonly endpoint: Endpoint;
  /** Header names, besides those under the prefix, that only this service may set. */
  readonly ownHeaders: ReadonlySet<string>;
}

/** Extra detail for the log line of a decision; never shown to the client. */
export interface DecisionNote {
  detail?: string;
}

export async function decide(
  request: AuthRequest,
  context: DecideContext,
  signal: AbortSignal,
  note: DecisionNote = {},
): Promise<Decision> {
  const selected = selectPolicy(request, context);
  if (!selected.ok) {
    note.detail = selected.detail;
    return deny(null, 'policy_error', 500, null, 'the route is not configured correctly', null, 'none');
  }
  const policy = selected.policy;
  const config = policy.config;

  const bearer = extractBearer(headerValues(request, 'authorization'), context.maxTokenLength);
  if (bearer.kind === 'missing') {
    return deny(config, 'missing_token', 401, null, 'a bearer token is required', null, 'none');
  }
  if (bearer.kind === 'invalid') {
    return deny(config, 'invalid_request', 400, 'invalid_request', bearer.description, null, 'none');
  }

  const { result, cache } = await context.introspect(policy.endpoint, bearer.token, signal);
  const endpoint = policy.endpoint.name;
  switch (result.outcome) {
    case 'inactive':
      return deny(config, 'inactive', 401, 'invalid_token', 'the token is not active', endpoint, cache);
    case 'error':
    case 'timeout':
      note.detail = result.detail;
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
      return deny(config, 'bad_response', config.badResponseStatus, null, 'the token could not be verified', endpoint, cache);
    case 'active':
      break;
  }

  const evaluation = evaluatePolicy(config, result.claims);
  if (!evaluation.ok) {
    note.detail = evaluation.log;
    return deny(config, evaluation.reason, 403, null, evaluation.description, endpoint, cache);
  }
  const setByUs = new Set(evaluation.headers.map((h) => h.name));
  return {
    allow: true,
    reason: 'ok',
    policy: config.name,
    identity: evaluation.identity,
    headers: evaluation.headers,
    removeHeaders: spoofedHeaders(request.headers.keys(), config.headerPrefix, policy.ownHeaders, setByUs),
    metadata: evaluation.metadata,
    endpoint,
    cache,
  };
}

type Selection = { ok: true; policy: CompiledPolicy } | { ok: false; detail: string };

/**
 * The route's policy, named by Envoy's context_extensions, else the default.
 * An unknown name is a configuration error and never falls back to the default,
 * which may be weaker than what the route asked for.
 */
function selectPolicy(request: AuthRequest, context: DecideContext): Selection {
  const name = request.contextExtensions.get(context.policySelector);
  if (name === undefined) return { ok: true, policy: context.defaultPolicy };
  const policy = context.policies.get(name);
  if (!policy) return { ok: false, detail: `the route names policy "${name}", which is not configured` };
  return { ok: true, policy };
}

function deny(
  policy: PolicyConfig | null,
  reason: Deny['reason'],
  status: number,
  bearerError: BearerError | null,
  description: string,
  endpoint: string | null,
  cache: CacheResult,
): Deny {
  return {
    allow: false,
    reason,
    policy: policy?.name ?? null,
    status,
    challenge: challengeFor(policy, status, bearerError, description),
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
