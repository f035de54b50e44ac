import { writeTextOutput } from '@fairprune/core';

/** Writes the HTML on the output protocol (lock, temp sibling, one rename): a reader never sees half a report. */
export function writeReport(file: string, html: string): Promise<string> {
  return writeTextOutput(file, html, 'report');
}
