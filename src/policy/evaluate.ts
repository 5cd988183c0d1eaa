/**
 * What a policy makes of an active token's claims: the identity and the
 * headers the upstream receives. Pure; no I/O.
 */
import type { PolicyConfig } from '../config/load.js';
import type { HeaderToSet } from '../decision.js';
import { renderTemplate } from './identity-template.js';
import { isSafeHeaderValue, MAX_HEADER_VALUE_LENGTH } from './upstream-headers.js';
import type { Claims } from '../introspection/result.js';

export type Evaluation =
  | { ok: true; identity: string; headers: HeaderToSet[]; metadata: Record<string, string> }
  | { ok: false; reason: 'policy_error'; description: string; log: string };

export function evaluatePolicy(policy: PolicyConfig, claims: Claims): Evaluation {
  const rendered = renderTemplate(policy.mappedIdentity, claims);
  if (!rendered.ok) {
    return {
      ok: false,
      reason: 'policy_error',
      description: 'the token does not identify its holder',
      log: `mappedIdentity needs one of the claims ${rendered.missing.join(', ')}, none present`,
    };
  }
  const identity = rendered.value;
  if (!isSafeHeaderValue(identity) || identity.length > MAX_HEADER_VALUE_LENGTH) {
    return {
      ok: false,
      reason: 'policy_error',
      description: 'the token does not identify its holder',
      log: 'the identity has control characters or is too long for a header',
    };
  }
  return {
    ok: true,
    identity,
    headers: [{ name: policy.identityHeader, value: identity }],
    metadata: { identity },
  };
}
