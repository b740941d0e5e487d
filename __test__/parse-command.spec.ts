import { describe, expect, it } from 'vitest'

import { parseCommand, quoteCommand } from '../index.js'

describe('parseCommand', () => {
  it.each([
    ['ffmpeg -i in.mp4 out.mp4', 'ffmpeg', ['-i', 'in.mp4', 'out.mp4']],
    ['  ffmpeg \t -y\n  out.mp4  ', 'ffmpeg', ['-y', 'out.mp4']],
    [`render "hello world" 'single quoted'`, 'render', ['hello world', 'single quoted']],
    [`render title="My 'Awesome' Video"`, 'render', ["title=My 'Awesome' Video"]],
    [`render 'say "hi"'`, 'render', ['say "hi"']],
    [`render key="a b" pre'mid'post`, 'render', ['key=a b', 'premidpost']],
    [`render "" ''`, 'render', ['', '']],
    ['render a\\ b', 'render', ['a b']],
    [`render "He said \\"Hi\\""`, 'render', ['He said "Hi"']],
    [`render 'it\\'s'`, 'render', ["it's"]],
    ['render a;b | c > d $(e)', 'render', ['a;b', '|', 'c', '>', 'd', '$(e)']],
    ['render "日本 語" 🎬', 'render', ['日本 語', '🎬']],
  ])('splits %s', (input, command, args) => {
    expect(parseCommand(input)).toEqual({ command, args })
  })

  it.each(['', '   ', '\t\n'])('refuses the empty command %j with the exact message', (input) => {
    expect(() => parseCommand(input)).toThrow(
      expect.objectContaining({ message: 'Command string cannot be empty', code: 'ERR_INVALID_COMMAND' }),
    )
  })

  it('refuses an unterminated quote, saying which and where', () => {
    expect(() => parseCommand('echo "abc')).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_COMMAND', message: expect.stringMatching(/double quote.*column 6/) }),
    )
    expect(() => parseCommand("echo x 'abc")).toThrow(/single quote.*column 8/)
  })

  it('refuses a trailing backslash, saying where', () => {
    expect(() => parseCommand('echo abc\\')).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_COMMAND', message: expect.stringMatching(/backslash.*column 9/i) }),
    )
  })

  it('refuses a NUL byte', () => {
    expect(() => parseCommand('echo a\0b')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_COMMAND' }))
  })

  it('refuses a non-string with a TypeError', () => {
    expect(() => parseCommand(42 as unknown as string)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }),
    )
  })
})

describe('quoteCommand', () => {
  it.each([
    ['ffmpeg', ['-i', 'My Movie (final).mov', '-metadata', `title=It's "done"`, 'out dir/out.mp4']],
    ['/opt/render tools/render', ['', 'tab\there', 'back\\slash', '日本 語', '$(not a shell)']],
    ['echo', []],
  ])('round-trips %s through parseCommand', (program, args) => {
    expect(parseCommand(quoteCommand(program, args))).toEqual({ command: program, args })
  })

  it('leaves plain words alone', () => {
    expect(quoteCommand('echo', ['a', 'b c'])).toBe('echo a "b c"')
    expect(quoteCommand('true')).toBe('true')
  })

  it('refuses what no command string can carry', () => {
    expect(() => quoteCommand('', [])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_COMMAND' }))
    expect(() => quoteCommand('echo', ['a\0b'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_COMMAND' }))
    expect(() => quoteCommand('echo', [1 as unknown as string])).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"args[0]"') }),
    )
    expect(() => quoteCommand('echo', 'a b' as unknown as string[])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
  })
})
