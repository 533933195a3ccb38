package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// shimDelete answers containerd's cleanup call after a lost task connection:
//
//	<binary> -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle DIR] [-debug] delete
//
// It cleans up what the technology left for that container and prints a
// task.DeleteResponse (protobuf) on stdout, as a shim would.
func shimDelete(sb Sandboxer, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "container id")
	bundle := fs.String("bundle", "", "bundle directory")
	fs.String("namespace", "", "containerd namespace")
	fs.String("address", "", "containerd address")
	fs.String("publish-binary", "", "containerd binary")
	fs.Bool("debug", false, "debug")
	if err := fs.Parse(args[:len(args)-1]); err != nil {
		return err
	}
	if err := sandbox.ValidateID("id", *id); err != nil {
		return err
	}
	if *bundle == "" {
		if wd, err := os.Getwd(); err == nil {
			*bundle = wd
		}
	}
	exit := &ShimExit{Status: 128 + 9, At: time.Now()}
	if sb.ShimDelete != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e, err := sb.ShimDelete(ctx, *id, *bundle)
		if err != nil {
			return fmt.Errorf("delete %s: %w", *id, err)
		}
		if e != nil {
			exit = e
		}
	}
	data, err := proto.Marshal(&taskv2.DeleteResponse{Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: timestamppb.New(exit.At)})
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}
