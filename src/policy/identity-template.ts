/**
 * Identity templates (IBM Verify Access: mapped_identity), such as
 * "{iss}/{sub}" or "{sub|username|client_id}". Compiled once at configuration
 * load; rendering is a loop over precomputed parts.
 */

type Part = string | readonly string[];

export interface IdentityTemplate {
  readonly source: string;
  readonly parts: readonly Part[];
  /** Every claim the template may read, for documentation and checks. */
  readonly claims: readonly string[];
}

export type Rendered = { ok: true; value: string } | { ok: false; missing: readonly string[] };

export function compileTemplate(source: string): IdentityTemplate {
  const parts: Part[] = [];
  const claims = new Set<string>();
  let literal = '';
  let i = 0;
  while (i < source.length) {
    const ch = source[i]!;
    if (ch === '{' && source[i + 1] === '{') {
      literal += '{';
      i += 2;
    } else if (ch === '}' && source[i + 1] === '}') {
      literal += '}';
      i += 2;
    } else if (ch === '}') {
      throw new TypeError(`unmatched "}" at character ${i + 1}; write "}}" for a literal brace`);
    } else if (ch === '{') {
      const end = source.indexOf('}', i + 1);
      if (end < 0) throw new TypeError(`unclosed "{" at character ${i + 1}`);
      const inner = source.slice(i + 1, end);
      if (inner.includes('{')) throw new TypeError(`"{" inside a placeholder at character ${i + 1}`);
      const names = inner.split('|').map((name) => name.trim());
      if (names.some((name) => name === '')) {
        throw new TypeError(`empty claim name in "{${inner}}"`);
      }
      if (literal) parts.push(literal);
      literal = '';
      parts.push(names);
      for (const name of names) claims.add(name);
      i = end + 1;
    } else {
      literal += ch;
      i += 1;
    }
  }
  if (literal) parts.push(literal);
  if (claims.size === 0) throw new TypeError('must contain at least one placeholder such as {sub}');
  return { source, parts, claims: [...claims] };
}

/** A claim value usable in an identity: a non-empty string or a finite number. */
function scalar(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

export function renderTemplate(template: IdentityTemplate, claims: Readonly<Record<string, unknown>>): Rendered {
  let value = '';
  for (const part of template.parts) {
    if (typeof part === 'string') {
      value += part;
      continue;
    }
    let found: string | undefined;
    for (const name of part) {
      found = Object.hasOwn(claims, name) ? scalar(claims[name]) : undefined;
      if (found !== undefined) break;
    }
    if (found === undefined) return { ok: false, missing: part };
    value += found;
  }
  return { ok: true, value };
}
