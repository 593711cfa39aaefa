// The CBLAS interface from libblas-dev (Debian installs it under the multiarch include folder).
#include <cblas.h>
