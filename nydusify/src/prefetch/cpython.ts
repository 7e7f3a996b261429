/**
 * What CPython 3 reads from the image before it runs a line of the program: the C library's
 * locale for the C.UTF-8 coercion it applies when no locale is set (PEP 538) and the gconv cache,
 * the `encodings` package with the UTF-8 codec (not frozen into the binary, unlike the rest of
 * the start-up modules since 3.11), Debian's `sitecustomize`, and every `.pth` file of the site
 * directories (`site` reads them all). Each one is a miss of its own, one after another, when the
 * interpreter starts: on bench/coldstart's python3 image, five round trips after the table's
 * prefetch had finished.
 *
 * Recognised from the image alone: the command's executable is named `pythonX.Y` and its prefix
 * holds `lib/pythonX.Y/encodings`. Paths that do not exist are left out by the caller.
 */

const CPYTHON = /^python(\d)\.(\d{1,3})$/;
const SITE_DIRS = (prefix: string, version: string): string[] => [
  `${prefix}/lib/python${version}/site-packages`,
  `${prefix === '/usr' ? '/usr/local' : prefix}/lib/python${version}/dist-packages`,
  `${prefix}/lib/python${version.split('.')[0]}/dist-packages`,
];
/** More `.pth` files than this in one directory are not worth a table entry each. */
const MAX_PTH = 32;

export interface CpythonImage {
  /** Whether `path` is a directory, or a regular file, in the image. */
  isDir(path: string): boolean;
  isFile(path: string): boolean;
  /** The names in directory `path`, in the image's order. */
  list(path: string): string[];
}

/**
 * The files CPython opens while it starts, in the order it opens them, if `exe` (a canonical
 * path) is a CPython interpreter; else none.
 */
export function cpythonStartupFiles(image: CpythonImage, exe: string, env: readonly string[], triplet: string | undefined): string[] {
  const m = CPYTHON.exec(exe.slice(exe.lastIndexOf('/') + 1));
  if (m === null) return [];
  const version = `${m[1]}.${m[2]}`;
  const tag = `cpython-${m[1]}${m[2]}`;
  const bin = exe.slice(0, exe.lastIndexOf('/')) || '/';
  const prefix = bin.slice(0, bin.lastIndexOf('/'));
  const stdlib = `${prefix}/lib/python${version}`;
  if (!image.isDir(`${stdlib}/encodings`)) return [];
  // The cached bytecode when there is one (the source is only stat'ed then), else the source.
  const pyc = (dir: string, module: string) => [`${dir}/__pycache__/${module}.${tag}.pyc`, `${dir}/${module}.py`].filter((p) => image.isFile(p)).slice(0, 1);
  return [
    ...localeFiles(env, triplet),
    ...['__init__', 'aliases', 'utf_8'].flatMap((mod) => pyc(`${stdlib}/encodings`, mod)),
    ...pyc(stdlib, 'sitecustomize'),
    ...SITE_DIRS(prefix, version).flatMap((dir) => image.list(dir).filter((n) => n.endsWith('.pth')).slice(0, MAX_PTH).map((n) => `${dir}/${n}`)),
  ];
}

/**
 * The locale data glibc's setlocale(LC_CTYPE, "") loads: the one the environment names, or
 * C.UTF-8, which CPython coerces an unset or C locale to, as a directory of the normalized name
 * (codeset lower-cased, without dashes). A locale only in the archive is left to on-demand reads:
 * the archive holds every generated locale and can be hundreds of MiB.
 */
function localeFiles(env: readonly string[], triplet: string | undefined): string[] {
  const value = (name: string) => env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1) || undefined;
  const named = value('LC_ALL') ?? value('LC_CTYPE') ?? value('LANG');
  const locale = named === undefined || named === 'C' || named === 'POSIX' ? 'C.utf8' : normalize(named);
  return [
    `/usr/lib/locale/${locale}/LC_CTYPE`,
    ...(triplet ? [`/usr/lib/${triplet}/gconv/gconv-modules.cache`] : []),
  ];
}

function normalize(locale: string): string {
  const [name, codeset] = locale.split('@')[0]!.split('.');
  return codeset === undefined ? name! : `${name}.${codeset.toLowerCase().replace(/[^a-z0-9]/g, '')}`;
}
