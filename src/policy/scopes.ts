/**
 * Required scopes (MuleSoft: scopes, scopeValidationCriteria). The policy's
 * scopes are a space-delimited string, split once at configuration load; the
 * token's `scope` is RFC 7662's space-delimited string or, as some servers
 * send it, an array of strings. Checked without splitting or allocating.
 */

export type ScopeCriteria = 'AND' | 'OR';

// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/** Split a space-delimited scope list; duplicates dropped, order kept. Throws a TypeError that never quotes the text. */
export function compileScopes(text: string): readonly string[] {
  const scopes: string[] = [];
  for (const token of text.split(' ')) {
    if (token === '') continue;
    if (!SCOPE_TOKEN.test(token)) {
      throw new TypeError('must be scope tokens separated by spaces: printable ASCII without quotes (") or backslashes');
    }
    if (!scopes.includes(token)) scopes.push(token);
  }
  return Object.freeze(scopes);
}

/** Whether `scope` is one of the space-separated tokens of `list`. */
function inList(list: string, scope: string): boolean {
  let from = 0;
  while (from <= list.length - scope.length) {
    const at = list.indexOf(scope, from);
    if (at < 0) return false;
    const end = at + scope.length;
    if ((at === 0 || list.charCodeAt(at - 1) === 0x20) && (end === list.length || list.charCodeAt(end) === 0x20)) return true;
    from = at + 1;
  }
  return false;
}

function granted(claim: unknown, scope: string): boolean {
  if (typeof claim === 'string') return inList(claim, scope);
  return Array.isArray(claim) && claim.includes(scope);
}

/**
 * Whether the token's scope claim satisfies the policy: every required scope
 * (AND) or at least one (OR). No requirement is always satisfied; a claim that
 * is neither a string nor an array grants nothing.
 */
export function scopesSatisfied(required: readonly string[], criteria: ScopeCriteria, claim: unknown): boolean {
  if (required.length === 0) return true;
  if (criteria === 'AND') {
    for (const scope of required) if (!granted(claim, scope)) return false;
    return true;
  }
  for (const scope of required) if (granted(claim, scope)) return true;
  return false;
}

/** error_description of an insufficient_scope deny: fixed sentences, safe inside a quoted header parameter. */
export function insufficientScopeDescription(criteria: ScopeCriteria): string {
  return criteria === 'AND' ? 'the token lacks a scope this resource requires' : 'the token has none of the scopes this resource accepts';
}
