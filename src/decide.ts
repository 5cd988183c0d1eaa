/**
 * The pipeline: request -> policy -> credentials -> introspection -> sender
 * binding -> policy evaluation -> Decision. Orchestration only; each step
 * lives in its module, and the only I/O is behind the injected introspector
 * and DPoP replay store.
 */
import { headerValues, type AuthRequest } from './auth-request.js';
import type { PolicyConfig } from './config/load.js';
import { extractBearer } from './credentials/bearer.js';
import { presentedCertificate } from './credentials/client-certificate.js';
import { extractProof, type DpopVerifier, type VerifiedProof } from './credentials/dpop.js';
import type { DpopNonces } from './credentials/dpop-nonce.js';
import { replayId, type ReplayStore } from './credentials/replay-store.js';
import { bindingOf } from './credentials/sender-binding.js';
import type { Allow, BearerError, CacheResult, Decision, Deny, HeaderToSet } from './decision.js';
import type { Claims } from './introspection/result.js';
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
  /** DPoP verification, replay detection and nonces: the Authorizer's, shared by every Check it answers. */
  readonly sender: SenderContext;
}

export interface SenderContext {
  readonly verifier: DpopVerifier;
  readonly replay: ReplayStore;
  /** Longest DPoP proof read (dpop.maxProofLength). */
  readonly maxProofLength: number;
  /** Server nonces, for policies with dpopNonce. */
  readonly nonces: DpopNonces;
}

/** Extra detail for the log line of a decision; never shown to the client. */
export interface DecisionNote {
  detail?: string;
}

export function decide(
  request: AuthRequest,
  context: DecideContext,
  signal: CallerSignal,
  note: DecisionNote = {},
): Promise<Decision> {
  // Not async, and an enforcing policy's decision is handed on as it comes: no hop of its own.
  try {
    const selected = selectPolicy(request, context);
    if (!selected.ok) {
      note.detail = selected.detail;
      switch (selected.problem) {
        case 'abnormal_path':
          return Promise.resolve(deny(null, 'invalid_request', 400, null, 'the request path is not in normal form', null, 'none'));
        case 'invalid_host':
          return Promise.resolve(deny(null, 'invalid_request', 400, null, 'the request host is not a valid host name', null, 'none'));
        case 'unknown_policy':
          return Promise.resolve(deny(null, 'policy_error', 500, null, 'the route is not configured correctly', null, 'none'));
      }
    }
    const { policy } = selected;
    const decision = decideFor(policy, request, context, signal, note);
    if (policy.config.enforcement === 'enforce') return decision;
    return decision.then((decided) => (decided.allow ? decided : dryRun(policy, request, decided, note)));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * enforcement: dryRun: the deny is kept on the record, and the request goes
 * on exactly as an anonymous passThrough one would, since the token (if any)
 * is one the policy refuses: nothing of it may reach the upstream.
 */
function dryRun(policy: CompiledPolicy, request: AuthRequest, denied: Deny, note: DecisionNote): Allow {
  const why = note.detail ?? denied.description;
  const allow = anonymous(policy, request, denied.endpoint, denied.cache, note, why);
  note.detail = `dry run: ${why}`;
  return { ...allow, reason: 'dry_run', wouldDeny: { reason: denied.reason, status: denied.status } };
}

async function decideFor(
  policy: CompiledPolicy,
  request: AuthRequest,
  context: DecideContext,
  signal: CallerSignal,
  note: DecisionNote,
): Promise<Decision> {
  const config = policy.config;

  const bearer = extractBearer(headerValues(request, 'authorization'), context.maxTokenLength, config.senderConstraint !== 'off');
  if (bearer.kind === 'missing') {
    if (config.passThrough) return anonymous(policy, request, null, 'none', note, 'no bearer token');
    return deny(config, 'missing_token', 401, null, 'a bearer token is required', null, 'none');
  }
  if (bearer.kind === 'invalid') {
    if (config.passThrough) return anonymous(policy, request, null, 'none', note, bearer.description);
    return deny(config, 'invalid_request', 400, 'invalid_request', bearer.description, null, 'none');
  }

  // Checked before introspection: a proof that cannot be right costs the endpoint nothing.
  let proof: VerifiedProof | null = null;
  if (bearer.scheme === 'dpop') {
    const sender = context.sender;
    const header = extractProof(headerValues(request, 'dpop'), sender.maxProofLength);
    if (header.kind !== 'proof') {
      const description = header.kind === 'missing' ? 'the DPoP scheme needs a DPoP proof header' : header.description;
      return dpopDeny(config, 'invalid_dpop_proof', 'invalid_dpop_proof', description, null, 'none');
    }
    const target = { method: request.method, scheme: request.scheme ?? '', host: request.host, path: request.path, token: bearer.token };
    const checked = await sender.verifier.verify(header.proof, target, {
      algorithms: config.dpopAlgorithms,
      windowSeconds: config.dpopProofWindow,
    });
    if (!checked.ok) return dpopDeny(config, 'invalid_dpop_proof', 'invalid_dpop_proof', checked.description, null, 'none');
    if (config.dpopNonce && !sender.nonces.accepts(checked.proof.nonce)) {
      const description = 'the DPoP proof must carry the nonce this server supplies';
      const nonce = [{ name: 'dpop-nonce', value: sender.nonces.current() }];
      return dpopDeny(config, 'use_dpop_nonce', 'use_dpop_nonce', description, null, 'none', nonce);
    }
    proof = checked.proof;
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

  // With sender constraints off (the usual case) there is nothing to wait for: no promise and no hop for it.
  const unbound = config.senderConstraint === 'off' ? null : await senderBinding(request, config, result.claims, bearer.scheme, proof, context);
  if (unbound !== null) {
    const { reason, error, description } = unbound;
    if (bearer.scheme === 'dpop' || error === 'invalid_dpop_proof') return dpopDeny(config, reason, error, description, endpoint, cache);
    return deny(config, reason, 401, error, description, endpoint, cache);
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
  const allow: Allow = {
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
  // The next nonce goes with every answer, so a client never needs a deny to learn it.
  if (proof === null || !config.dpopNonce) return allow;
  return { ...allow, responseHeaders: [{ name: 'dpop-nonce', value: context.sender.nonces.current() }] };
}

interface Unbound {
  reason: Deny['reason'];
  error: 'invalid_token' | 'invalid_dpop_proof';
  description: string;
}

/**
 * RFC 8705 section 3 and RFC 9449 section 7: the token's binding (cnf) must be
 * matched by what this request presents. The proof's own checks are done;
 * what is left is its key, and its jti, recorded only now, for a proof whose
 * key holds the token, so a proof made with any other key fills no record.
 */
async function senderBinding(
  request: AuthRequest,
  config: PolicyConfig,
  claims: Claims,
  scheme: 'bearer' | 'dpop',
  proof: VerifiedProof | null,
  context: DecideContext,
): Promise<Unbound | null> {
  const binding = bindingOf(claims);
  if (binding === 'unsupported') return unbound('unsupported_binding', 'invalid_token', 'the token is bound by a method this service cannot check');
  if (binding === 'none' || (binding.method === 'mtls' && scheme === 'dpop')) {
    if (scheme === 'dpop') return unbound('unbound_token', 'invalid_token', 'the token is not bound to a DPoP key');
    if (config.senderConstraint === 'required') return unbound('unbound_token', 'invalid_token', 'the token is not sender-constrained');
    return null;
  }
  if (binding.method === 'dpop') {
    if (proof === null) return unbound('bound_token_as_bearer', 'invalid_token', 'the token is bound to a DPoP key: use the DPoP scheme');
    if (proof.thumbprint !== binding.thumbprint) {
      return unbound('invalid_dpop_proof', 'invalid_dpop_proof', 'the DPoP proof is not signed by the key the token is bound to');
    }
    const fresh = await context.sender.replay.claim(replayId(proof.thumbprint, proof.jti), proof.acceptableUntil);
    return fresh ? null : unbound('dpop_replay', 'invalid_dpop_proof', 'the DPoP proof was used before');
  }
  const presented = presentedCertificate(config.certificateSource, request);
  switch (presented.kind) {
    case 'none':
      return unbound('certificate_mismatch', 'invalid_token', 'the token is bound to a client certificate the request does not present');
    case 'invalid':
      return unbound('certificate_mismatch', 'invalid_token', presented.description);
    case 'thumbprint':
      return presented.thumbprint === binding.thumbprint
        ? null
        : unbound('certificate_mismatch', 'invalid_token', 'the client certificate is not the one the token is bound to');
  }
}

function unbound(reason: Unbound['reason'], error: Unbound['error'], description: string): Unbound {
  return { reason, error, description };
}

/** A 401 under the DPoP scheme (RFC 9449 section 7.1), announcing the algorithms accepted. */
function dpopDeny(
  config: PolicyConfig,
  reason: Deny['reason'],
  error: BearerError,
  description: string,
  endpoint: string | null,
  cache: CacheResult,
  headers?: readonly HeaderToSet[],
): Deny {
  const challenge =
    `DPoP realm="${config.realm}", algs="${config.dpopAlgorithms.join(' ')}", error="${error}", ` +
    `error_description="${description}"`;
  const denied = deny(config, reason, 401, error, description, endpoint, cache, challenge);
  return headers === undefined ? denied : { ...denied, headers };
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
  const { hideCredentials, passThroughCredentials, removeDpopHeader } = policy.config;
  if (hideCredentials || (anonymous && !passThroughCredentials && request.headers.has('authorization'))) remove.push('authorization');
  if (removeDpopHeader && request.headers.has('dpop')) remove.push('dpop');
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
