/**
 * Just enough of the Dockerfile and .dockerignore formats to check
 * deploy/Dockerfile without a Docker engine.
 */

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY... */
  keyword: string;
  /** The rest of the instruction, continuation lines joined with a space. */
  args: string;
  line: number;
}

export interface Stage {
  /** FROM's image, e.g. node:24-slim. */
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Instructions in order: comments and blank lines dropped, `\` continuations joined. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const start = i;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      i += 1;
      const next = lines[i]!.trim();
      // Comment lines inside a continued instruction are removed by Docker.
      line = next.startsWith('#') ? line : `${line.slice(0, -1).trimEnd()} ${next}`;
    }
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start + 1 });
  }
  return out;
}

export function stages(instructions: Instruction[]): Stage[] {
  const out: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      out.push({ image: words[0]!, name: words[1]?.toUpperCase() === 'AS' ? words[2] : undefined, instructions: [] });
    } else if (out.length > 0) {
      out[out.length - 1]!.instructions.push(instruction);
    }
  }
  return out;
}

/** The arguments of an exec-form instruction (["a", "b"]), or null for the shell form. */
export function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  const parsed = JSON.parse(args) as unknown;
  return Array.isArray(parsed) && parsed.every((a) => typeof a === 'string') ? parsed : null;
}

/**
 * Whether .dockerignore keeps `path` (relative, with /) out of the build
 * context. As Docker does: patterns in order, the last one that matches the
 * path or one of its parent folders wins, `!` re-includes, `**` spans folders.
 */
export function dockerignored(patterns: string[], path: string): boolean {
  let excluded = false;
  const parents = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).trim().replace(/^\/+/, '').replace(/\/+$/, '');
    if (pattern === '') continue;
    const regex = new RegExp(`^${globToRegex(pattern)}$`);
    if (parents.some((p) => regex.test(p))) excluded = !negated;
  }
  return excluded;
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i += 1) {
    const ch = glob[i]!;
    if (ch === '*' && glob[i + 1] === '*') {
      // "**/" matches any number of folders, including none.
      if (glob[i + 2] === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (ch === '*') out += '[^/]*';
    else if (ch === '?') out += '[^/]';
    else out += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return out;
}

/** .dockerignore lines that are patterns (comments and blank lines dropped). */
export function dockerignorePatterns(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}
