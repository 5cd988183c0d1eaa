/**
 * Globs on claim names (IBM Verify Access attribute rules): `*` matches any
 * run of characters, `?` exactly one; everything else is literal and
 * case-sensitive. Compiled once at configuration load into the cheapest
 * matcher that fits the pattern. The general case is a two-pointer match,
 * linear in practice and O(name × pattern) at worst, never a RegExp (which
 * backtracks exponentially on patterns such as `*a*a*a*b`).
 */

export type Glob =
  | { readonly kind: 'any'; readonly source: string }
  | { readonly kind: 'exact'; readonly source: string; readonly text: string }
  | { readonly kind: 'prefix'; readonly source: string; readonly text: string }
  | { readonly kind: 'suffix'; readonly source: string; readonly text: string }
  | { readonly kind: 'pattern'; readonly source: string };

const STAR = 0x2a;
const QUESTION = 0x3f;

export function compileGlob(source: string): Glob {
  if (source === '') throw new TypeError('the pattern is empty');
  for (let i = 0; i < source.length; i += 1) {
    const code = source.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) throw new TypeError('the pattern has control characters');
  }
  // Runs of stars mean what one star means.
  const pattern = source.replace(/\*{2,}/g, '*');
  if (pattern === '*') return { kind: 'any', source };
  if (!pattern.includes('?')) {
    const first = pattern.indexOf('*');
    if (first < 0) return { kind: 'exact', source, text: pattern };
    if (first === pattern.length - 1) return { kind: 'prefix', source, text: pattern.slice(0, -1) };
    if (first === 0 && pattern.indexOf('*', 1) < 0) return { kind: 'suffix', source, text: pattern.slice(1) };
  }
  return { kind: 'pattern', source: pattern };
}

export function matchGlob(glob: Glob, name: string): boolean {
  switch (glob.kind) {
    case 'any':
      return true;
    case 'exact':
      return name === glob.text;
    case 'prefix':
      return name.startsWith(glob.text);
    case 'suffix':
      return name.endsWith(glob.text);
    case 'pattern':
      return wildcardMatch(glob.source, name);
  }
}

/**
 * Greedy match that remembers the last star and, on a mismatch, lets that
 * star swallow one more character. Needs no recursion and no allocation.
 */
function wildcardMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    const code = p < pattern.length ? pattern.charCodeAt(p) : -1;
    if (code === STAR) {
      star = p;
      resume = n;
      p += 1;
    } else if (code === QUESTION || (code !== -1 && code === name.charCodeAt(n))) {
      p += 1;
      n += 1;
    } else if (star >= 0) {
      p = star + 1;
      resume += 1;
      n = resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern.charCodeAt(p) === STAR) p += 1;
  return p === pattern.length;
}
