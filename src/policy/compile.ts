/**
 * Policies with everything request time needs resolved once per loaded
 * configuration: the endpoint client, the headers no client may send, the
 * pass-through answer, the route table, and a memo of evaluations.
 */
import type { PolicyConfig } from '../config/load.js';
import type { HeaderToSet, Metadata } from '../decision.js';
import type { Claims } from '../introspection/result.js';
import type { Endpoint } from '../introspection/introspector.js';
import type { Evaluation } from './evaluate.js';
import { compileRoutes, type RouteTable } from './routes.js';
import { insufficientScopeDescription } from './scopes.js';
import { statusHeaderName } from './upstream-headers.js';

export interface CompiledPolicy {
  readonly config: PolicyConfig;
  /** The endpoint of an opaque token: the first the policy names. */
  readonly endpoint: Endpoint;
  /** With several endpoints, each by its issuer (see endpoint-selection.ts); null with one. */
  readonly endpointsByIssuer: ReadonlyMap<string, Endpoint> | null;
  /**
   * Header names outside `prefixes` that only this service may set: the
   * identity and attributes headers of every policy, since one upstream may
   * sit behind routes of several policies.
   */
  readonly ownHeaders: ReadonlySet<string>;
  /** headerPrefix of every policy, for the same reason. */
  readonly prefixes: readonly string[];
  /** WWW-Authenticate of an insufficient_scope deny (it names the required scopes). */
  readonly scopeChallenge: string;
  /** What a pass-through allow sets: the status marker only. */
  readonly anonymous: { readonly headers: readonly HeaderToSet[]; readonly metadata: Metadata };
  /**
   * Evaluations by claims object. A cached answer hands every Check the same
   * frozen claims, and an evaluation depends on nothing else, so a cache hit
   * costs a lookup here instead of rules, templates and header rendering.
   * Entries go with their claims.
   */
  readonly evaluations: WeakMap<Claims, Evaluation>;
}

export function compilePolicies(
  policies: readonly PolicyConfig[],
  endpoints: ReadonlyMap<string, Endpoint>,
): Map<string, CompiledPolicy> {
  const ownHeaders = new Set<string>();
  const prefixes = new Set<string>();
  for (const policy of policies) {
    ownHeaders.add(policy.identityHeader);
    if (policy.attributesHeader !== null) ownHeaders.add(policy.attributesHeader);
    if (policy.bindingHeader !== null) ownHeaders.add(policy.bindingHeader);
    prefixes.add(policy.headerPrefix);
  }
  const prefixList = Object.freeze([...prefixes]);
  const compiled = new Map<string, CompiledPolicy>();
  for (const policy of policies) {
    const named = policy.endpoints.map((name) => {
      const endpoint = endpoints.get(name);
      if (!endpoint) throw new Error(`policy ${policy.name} names endpoint ${name}, which was not built`);
      return endpoint;
    });
    compiled.set(policy.name, compilePolicy(policy, named, ownHeaders, prefixList));
  }
  return compiled;
}

/** One policy; `ownHeaders` and `prefixes` default to its own (tests, a single policy). */
export function compilePolicy(
  policy: PolicyConfig,
  endpoints: Endpoint | readonly Endpoint[],
  ownHeaders: ReadonlySet<string> = new Set(
    [policy.identityHeader, policy.attributesHeader, policy.bindingHeader].filter((name): name is string => name !== null),
  ),
  prefixes: readonly string[] = [policy.headerPrefix],
): CompiledPolicy {
  const list = Array.isArray(endpoints) ? (endpoints as readonly Endpoint[]) : [endpoints as Endpoint];
  // resolvePolicy gives every endpoint of a list its own issuer.
  const byIssuer = list.length > 1 ? new Map(list.map((endpoint) => [endpoint.issuer!, endpoint])) : null;
  const status = statusHeaderName(policy.headerPrefix);
  const description = insufficientScopeDescription(policy.scopeValidationCriteria);
  return Object.freeze({
    config: policy,
    endpoint: list[0]!,
    endpointsByIssuer: byIssuer,
    ownHeaders,
    prefixes,
    scopeChallenge:
      `Bearer realm="${policy.realm}", error="insufficient_scope", error_description="${description}", ` +
      `scope="${policy.scopes.join(' ')}"`,
    anonymous: Object.freeze({
      headers: Object.freeze([Object.freeze({ name: status, value: 'anonymous' })]),
      metadata: Object.freeze({ policy: policy.name, status: 'anonymous' }),
    }),
    evaluations: new WeakMap(),
  });
}

/** The host/path rules of every policy, ordered for matching. */
export function routeTable(policies: readonly PolicyConfig[]): RouteTable {
  return compileRoutes(policies.flatMap((policy) => policy.match.map((rule) => ({ ...rule, policy: policy.name }))));
}
