/**
 * What an introspection answer binds its token to (RFC 7800 cnf): a DPoP key
 * (RFC 9449 jkt) or a client certificate (RFC 8705 x5t#S256). Pure.
 */
import type { Claims } from '../introspection/result.js';

export type Binding =
  | { readonly method: 'dpop'; readonly thumbprint: string }
  | { readonly method: 'mtls'; readonly thumbprint: string };

/**
 * none: no cnf; unsupported: a cnf this service cannot check (another
 * confirmation method, a malformed value, or both methods at once, which no
 * server issues and whose reporting upstream would be ambiguous).
 */
export type BindingOf = Binding | 'none' | 'unsupported';

/** RFC 7638 / RFC 8705 thumbprints: base64url of a SHA-256, 43 characters. */
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

const bindings = new WeakMap<Claims, BindingOf>();

/** Memoised by claims object: a cached answer hands every Check the same frozen claims. */
export function bindingOf(claims: Claims): BindingOf {
  let binding = bindings.get(claims);
  if (binding === undefined) {
    binding = read(claims);
    bindings.set(claims, binding);
  }
  return binding;
}

function read(claims: Claims): BindingOf {
  if (!Object.hasOwn(claims, 'cnf') || claims.cnf === undefined) return 'none';
  const cnf = claims.cnf;
  if (cnf === null || typeof cnf !== 'object' || Array.isArray(cnf)) return 'unsupported';
  const members = cnf as Record<string, unknown>;
  const jkt = Object.hasOwn(members, 'jkt') ? members.jkt : undefined;
  const x5t = Object.hasOwn(members, 'x5t#S256') ? members['x5t#S256'] : undefined;
  if (jkt !== undefined && x5t !== undefined) return 'unsupported';
  if (jkt !== undefined) return typeof jkt === 'string' && THUMBPRINT.test(jkt) ? Object.freeze({ method: 'dpop', thumbprint: jkt }) : 'unsupported';
  if (x5t !== undefined) return typeof x5t === 'string' && THUMBPRINT.test(x5t) ? Object.freeze({ method: 'mtls', thumbprint: x5t }) : 'unsupported';
  // An empty cnf binds to nothing; any other member is a method we do not know.
  return Object.keys(members).length === 0 ? 'none' : 'unsupported';
}
