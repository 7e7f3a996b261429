/**
 * Parser for `WWW-Authenticate` headers (RFC 7235 challenges).
 *
 * Handles several challenges in one header (`Basic realm="a", Bearer realm="b"`),
 * several headers, quoted strings containing commas (Bearer scopes such as
 * `scope="repository:a:pull,push"`) and backslash escapes.
 */

export interface AuthChallenge {
  /** Lowercased scheme, e.g. "bearer" or "basic". */
  scheme: string;
  /** Parameters with lowercased names. */
  params: Record<string, string>;
}

const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isDelimiter = (c: string | undefined) => c === undefined || c === ',' || c === '=' || isSpace(c);

function parseOne(header: string, out: AuthChallenge[]): void {
  let i = 0;
  const n = header.length;
  let current: AuthChallenge | undefined;

  const skipSpaces = () => {
    while (i < n && isSpace(header[i])) i++;
  };
  const readToken = () => {
    const start = i;
    while (i < n && !isDelimiter(header[i])) i++;
    return header.slice(start, i);
  };
  const readQuoted = () => {
    // header[i] === '"'
    i++;
    let v = '';
    while (i < n && header[i] !== '"') {
      if (header[i] === '\\' && i + 1 < n) i++;
      v += header[i];
      i++;
    }
    i++; // closing quote (or end)
    return v;
  };

  while (i < n) {
    skipSpaces();
    if (header[i] === ',') {
      i++;
      continue;
    }
    if (i >= n) break;
    const token = readToken();
    if (!token) {
      // stray '=' or similar: skip a character to guarantee progress
      i++;
      continue;
    }
    skipSpaces();
    if (header[i] === '=' && current) {
      // auth-param: name=token or name="quoted string"
      i++;
      skipSpaces();
      let value: string;
      if (header[i] === '"') value = readQuoted();
      else {
        const start = i;
        while (i < n && header[i] !== ',' && !isSpace(header[i])) i++;
        value = header.slice(start, i);
      }
      current.params[token.toLowerCase()] = value;
    } else {
      current = { scheme: token.toLowerCase(), params: {} };
      out.push(current);
      // token68 right after the scheme (e.g. `Negotiate abc==`): stored as param "token68"
      skipSpaces();
      const save = i;
      const t = readToken();
      if (t) {
        let j = i;
        while (j < n && header[j] === '=') j++;
        let k = j;
        while (k < n && isSpace(header[k])) k++;
        if (k >= n || header[k] === ',') {
          current.params.token68 = header.slice(save, j);
          i = k;
          continue;
        }
      }
      i = save;
    }
  }
}

/** Parse one or more WWW-Authenticate header values into challenges (in order). */
export function parseWwwAuthenticate(header: string | string[] | undefined | null): AuthChallenge[] {
  if (header === undefined || header === null) return [];
  const out: AuthChallenge[] = [];
  for (const h of Array.isArray(header) ? header : [header]) parseOne(h, out);
  return out;
}
