package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/shardlog/shardlog/fsck"
	"github.com/shardlog/shardlog/keyring"
	"github.com/shardlog/shardlog/segment"
	"github.com/shardlog/shardlog/vfs"
)

// fsckExit ends the process with an fsck exit code (fsck.Exit*). main exits
// with 1 on any error, and fsck needs 0-4, so the subcommands exit
// themselves; tests replace this.
var fsckExit = os.Exit

func newFsckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fsck",
		Short: "Inspect, verify and repair a data directory (offline)",
		Long: `Inspect, verify and repair a shardlog data directory.

Exit codes: 0 clean, 1 warnings only, 2 errors, 3 repaired, 4 fsck itself failed.`,
	}
	cmd.AddCommand(newFsckVerifyCmd(), newFsckDumpCmd(), newFsckRepairCmd())
	return cmd
}

func newFsckVerifyCmd() *cobra.Command {
	var o fsck.Options
	var asJSON bool
	var keyringFile string
	cmd := &cobra.Command{
		Use:   "verify DATA_DIR",
		Short: "Check every segment, the index and the metadata; read-only",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Dir, o.FS, o.Progress = args[0], vfs.OS{}, progressWriter(cmd.ErrOrStderr())
			var err error
			if o.Keys, err = fsckKeys(keyringFile, o.Dir); err != nil {
				return finishFsck(cmd, nil, err, asJSON)
			}
			rep, err := fsck.Verify(o)
			return finishFsck(cmd, rep, err, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Stream, "stream", "", "check only this stream")
	f.StringVar(&o.Shard, "shard", "", "check only this shard (shardId-000000000000 or 0)")
	f.BoolVar(&o.Deep, "deep", false, "also decompress every frame and parse every record (of encrypted segments: with their master keys)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	addKeyringFlag(cmd, &keyringFile)
	return cmd
}

// addKeyringFlag adds fsck's --keyring: the server's keyring file, whose
// master keys (and the data directory's generated alias/aws/kinesis key)
// decrypt encrypted segments. CRC checks never need it.
func addKeyringFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVar(file, "keyring", "", "the server's --keyring file, to decode the records of encrypted segments (the data directory's generated alias/aws/kinesis key is used without it)")
}

// fsckKeys are the master keys fsck may use: the keyring file's, if given,
// and the generated key of dataDir ("" if unknown).
func fsckKeys(file, dataDir string) (segment.Keys, error) {
	k, err := keyring.Open(keyring.Options{File: file, DataDir: dataDir})
	if err != nil {
		return nil, err
	}
	return k.Keys(), nil
}

func newFsckDumpCmd() *cobra.Command {
	var o fsck.DumpOptions
	var keyringFile string
	cmd := &cobra.Command{
		Use:   "dump SEGMENT_FILE|SHARD_DIR",
		Short: "Print a segment's frames (and records); read-only",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Path, o.FS = args[0], vfs.OS{}
			keys, err := fsckKeys(keyringFile, fsck.DataDirOf(o.Path))
			if err == nil {
				o.Keys = keys
				err = fsck.Dump(cmd.OutOrStdout(), o)
			}
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "shardlog:", err)
				fsckExit(fsck.ExitFailed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Records, "records", false, "print every record: sequence, arrival, partition key, size and a data preview")
	f.BoolVar(&o.JSON, "json", false, "print one JSON object per line")
	f.Uint64Var(&o.FromSeq, "from-seq", 0, "skip frames and records before this sequence (ordinal)")
	addKeyringFlag(cmd, &keyringFile)
	return cmd
}

func newFsckRepairCmd() *cobra.Command {
	var dryRun, asJSON bool
	var keyringFile string
	cmd := &cobra.Command{
		Use:   "repair DATA_DIR",
		Short: "Cut torn tails, salvage damaged segments, rebuild the index; the server must be stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := fsck.Options{Dir: args[0], FS: vfs.OS{}, Progress: progressWriter(cmd.ErrOrStderr())}
			var err error
			if o.Keys, err = fsckKeys(keyringFile, o.Dir); err != nil {
				return finishFsck(cmd, nil, err, asJSON)
			}
			rep, err := fsck.Repair(o, dryRun)
			return finishFsck(cmd, rep, err, asJSON)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "report what would be done and change nothing")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	addKeyringFlag(cmd, &keyringFile)
	return cmd
}

// finishFsck prints the report and exits with its code; an fsck failure
// (including a directory held by a running server, for repair) exits 4.
func finishFsck(cmd *cobra.Command, rep *fsck.Report, err error, asJSON bool) error {
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "shardlog:", err)
		fsckExit(fsck.ExitFailed)
		return nil
	}
	if asJSON {
		err = rep.WriteJSON(cmd.OutOrStdout())
	} else {
		err = rep.WriteText(cmd.OutOrStdout())
	}
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "shardlog:", err)
		fsckExit(fsck.ExitFailed)
		return nil
	}
	if code := rep.ExitCode(); code != fsck.ExitOK {
		fsckExit(code)
	}
	return nil
}

// progressWriter is w when it is a terminal (a character device), else nil:
// no progress display in pipes, files or CI logs.
func progressWriter(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return f
}
