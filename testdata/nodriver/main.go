// Command nodriver opens an SQLite DSN without importing an SQLite driver;
// TestOpenWithoutDriver checks the error it prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/pgqrs/pgqrs-go"
)

func main() {
	_, err := pgqrs.Open(context.Background(), "sqlite:"+os.TempDir()+"/nodriver.db")
	fmt.Println(errors.Is(err, pgqrs.ErrDriverNotImported), err)
}
